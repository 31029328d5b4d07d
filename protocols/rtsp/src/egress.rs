//! Media going out over RTP to a player: one packetizer per track set up,
//! each frame's presentation time on the track's RTP clock, key frames
//! preceded by their parameter sets when the access unit lacks them (a
//! player that joins, or whose stream changed resolution, decodes from the
//! first key frame), and RTCP sender reports that map every track's clock
//! to the same wall-clock time so the player lines up audio and video
//! (RFC 3550 §6.4.1).

use core::net::SocketAddr;
use std::collections::VecDeque;

use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo};
use arcly_core::media::codec::{h264, h265, nal};
use arcly_core::session::Transmit;
use arcly_core::time::Instant;
use bytes::{BufMut, Bytes, BytesMut};

use crate::message::interleaved_header;
use crate::payload::{self, Packetizer};
use crate::rtcp::{self, SenderReport};

/// How often a sender report goes out per track.
pub(crate) const SR_INTERVAL_US: u64 = 5_000_000;

/// Where a track's packets go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Interleaved on the control connection: RTP and RTCP channels.
    Tcp(u8, u8),
    /// UDP from our pair to the player's.
    Udp {
        /// Our RTP socket.
        rtp_from: SocketAddr,
        /// Our RTCP socket.
        rtcp_from: SocketAddr,
        /// The player's RTP port.
        rtp_to: SocketAddr,
        /// The player's RTCP port.
        rtcp_to: SocketAddr,
    },
}

/// One outgoing track.
#[derive(Debug)]
pub(crate) struct OutTrack {
    pub(crate) info: TrackInfo,
    pub(crate) clock: u32,
    ssrc: u32,
    /// Added to every RTP time stamp (a random origin).
    ts_offset: u32,
    packetizer: Packetizer,
    pub(crate) wire: Option<Wire>,
    /// The parameter sets, length-prefixed, put before a key frame that
    /// lacks them.
    params: Bytes,
    packets: u32,
    octets: u32,
    pub(crate) sent_frames: u64,
}

/// The outgoing tracks of one playing session.
#[derive(Debug)]
pub(crate) struct Egress {
    pub(crate) tracks: Vec<OutTrack>,
    /// `(media time in µs, the instant it was sent)` of the first frame
    /// sent: maps the media clock to wall-clock for sender reports.
    origin: Option<(i64, Instant)>,
    /// Wall-clock Unix microseconds at `Instant::ZERO`.
    unix_base_us: u64,
    sr_due: Option<Instant>,
    /// Waiting for a key frame before sending video (after a lag or a
    /// pause).
    pub(crate) wait_key: bool,
}

impl Egress {
    /// Tracks for `set`, with SSRCs, sequence numbers and time origins
    /// drawn from `seed`.
    pub(crate) fn new(
        tracks: &arcly_core::frame::TrackSet,
        seed: u64,
        mtu: usize,
        unix_base_us: u64,
    ) -> Egress {
        let mut out = Vec::new();
        let mut x = seed | 1;
        let mut next = || {
            // xorshift64: distinct values per track, not a secret.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (i, t) in tracks.iter().enumerate() {
            if payload::rtpmap(t).is_none() {
                continue;
            }
            let r = next();
            let pt = crate::sdp::payload_type(i);
            let Ok(packetizer) = Packetizer::new(t.codec, pt, r as u32, (r >> 32) as u16, mtu)
            else {
                continue;
            };
            out.push(OutTrack {
                info: t.clone(),
                clock: payload::clock_rate(t),
                ssrc: r as u32,
                ts_offset: (r >> 40) as u32,
                packetizer,
                wire: None,
                params: parameter_sets(t),
                packets: 0,
                octets: 0,
                sent_frames: 0,
            });
        }
        Egress {
            tracks: out,
            origin: None,
            unix_base_us,
            sr_due: None,
            wait_key: false,
        }
    }

    /// The index of the track with this id.
    pub(crate) fn index_of(&self, id: TrackId) -> Option<usize> {
        self.tracks.iter().position(|t| t.info.id == id)
    }

    /// The RTP time stamp track `i` gives media time `us` (µs).
    fn rtp_time(&self, i: usize, us: i64) -> u32 {
        let t = &self.tracks[i];
        let clock =
            arcly_core::time::Timescale::new(t.clock).unwrap_or(arcly_core::time::Timescale::MPEG);
        let ticks = arcly_core::time::rescale(us, arcly_core::time::Timescale::MICROS, clock);
        (ticks as u32).wrapping_add(t.ts_offset)
    }

    /// The RTP time stamp of a frame's presentation time on track `i`,
    /// rescaled from its own ticks (an audio track whose timescale is its
    /// sample rate keeps exact steps).
    fn frame_rtp_time(&self, i: usize, t: arcly_core::time::MediaTime) -> u32 {
        let track = &self.tracks[i];
        let clock = arcly_core::time::Timescale::new(track.clock)
            .unwrap_or(arcly_core::time::Timescale::MPEG);
        (t.rescale(clock).ticks as u32).wrapping_add(track.ts_offset)
    }

    /// `RTP-Info` for a PLAY whose first frame is at media time `start_us`
    /// (µs): `url=BASE/trackID=N;seq=S;rtptime=T` for each track set up.
    pub(crate) fn rtp_info(&self, base: &str, start_us: Option<i64>) -> String {
        let mut parts = Vec::new();
        for (i, t) in self.tracks.iter().enumerate() {
            if t.wire.is_none() {
                continue;
            }
            let mut p = format!(
                "url={base}/trackID={};seq={}",
                t.info.id.0,
                t.packetizer.next_sequence()
            );
            if let Some(us) = start_us {
                p.push_str(&format!(";rtptime={}", self.rtp_time(i, us)));
            }
            parts.push(p);
        }
        parts.join(",")
    }

    /// Maps media time `live_us` (the newest frame at hand) to `now` for
    /// sender reports, and makes the first report due at once: sent before
    /// the first packet, it gives a player one mapping for every packet,
    /// the GOP cache's older frames included.
    pub(crate) fn start(&mut self, now: Instant, live_us: i64) {
        self.origin = Some((live_us, now));
        self.sr_due = Some(now);
    }

    /// Sends `f` (if its track is set up), queueing its packets on `out`.
    pub(crate) fn send(&mut self, now: Instant, f: &MediaFrame, out: &mut VecDeque<Transmit>) {
        let Some(i) = self.index_of(f.track) else {
            return;
        };
        if self.tracks[i].wire.is_none() {
            return;
        }
        if f.codec.is_video() {
            if self.wait_key && !f.is_key() {
                return;
            }
            if f.is_key() {
                self.wait_key = false;
            }
        }
        let us = f.pts.as_micros();
        if self.origin.is_none() {
            self.start(now, us);
            self.handle_timeout(now, out);
        }
        let ts = self.frame_rtp_time(i, f.pts);
        let t = &mut self.tracks[i];
        let payload = if f.is_key() && !t.params.is_empty() && !has_parameter_sets(f) {
            let mut b = BytesMut::with_capacity(t.params.len() + f.payload.len());
            b.put_slice(&t.params);
            b.put_slice(&f.payload);
            b.freeze()
        } else {
            f.payload.clone()
        };
        let mut pkts = Vec::new();
        if t.packetizer.packetize(ts, &payload, &mut pkts).is_err() {
            return;
        }
        t.sent_frames += 1;
        let Some(wire) = t.wire else { return };
        for p in pkts {
            t.packets = t.packets.wrapping_add(1);
            t.octets = t
                .octets
                .wrapping_add(p.len().saturating_sub(crate::rtp::RtpHeader::LEN) as u32);
            out.push_back(transmit(wire, false, p));
        }
    }

    /// Sender reports, when due.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut VecDeque<Transmit>) {
        let (Some(due), Some((origin_us, origin_at))) = (self.sr_due, self.origin) else {
            return;
        };
        if now < due {
            return;
        }
        self.sr_due = Some(now.saturating_add(core::time::Duration::from_micros(SR_INTERVAL_US)));
        let media_us = origin_us + now.saturating_duration_since(origin_at).as_micros() as i64;
        let ntp = rtcp::unix_micros_to_ntp(self.unix_base_us + now.as_micros());
        for i in 0..self.tracks.len() {
            let rtp_time = self.rtp_time(i, media_us);
            let t = &self.tracks[i];
            let Some(wire) = t.wire else { continue };
            let sr = SenderReport {
                ssrc: t.ssrc,
                ntp,
                rtp_time,
                packets: t.packets,
                octets: t.octets,
            };
            out.push_back(transmit(
                wire,
                true,
                rtcp::write_sender_report(&sr, "arcly"),
            ));
        }
    }

    /// BYE on every track set up.
    pub(crate) fn bye(&self, out: &mut VecDeque<Transmit>) {
        for t in &self.tracks {
            if let Some(w) = t.wire {
                out.push_back(transmit(w, true, rtcp::write_bye(t.ssrc)));
            }
        }
    }

    /// RTP packets and payload bytes sent over all tracks.
    pub(crate) fn sent(&self) -> (u64, u64) {
        self.tracks.iter().fold((0, 0), |(p, b), t| {
            (p + u64::from(t.packets), b + u64::from(t.octets))
        })
    }

    /// When the next sender report is due.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.sr_due
    }
}

/// A packet as a transmit on `wire` (RTCP when `rtcp`).
pub(crate) fn transmit(wire: Wire, rtcp: bool, p: Bytes) -> Transmit {
    match wire {
        Wire::Tcp(a, b) => {
            let mut buf = BytesMut::with_capacity(4 + p.len());
            buf.put_slice(&interleaved_header(if rtcp { b } else { a }, p.len()));
            buf.put_slice(&p);
            Transmit::stream(buf.freeze())
        }
        Wire::Udp {
            rtp_from,
            rtcp_from,
            rtp_to,
            rtcp_to,
        } => {
            if rtcp {
                Transmit::datagram(Some(rtcp_from), rtcp_to, p)
            } else {
                Transmit::datagram(Some(rtp_from), rtp_to, p)
            }
        }
    }
}

/// A track's parameter sets as length-prefixed NAL units (H.264: SPS, PPS;
/// H.265: VPS, SPS, PPS); empty for other codecs.
fn parameter_sets(t: &TrackInfo) -> Bytes {
    let nals: Vec<Bytes> = match t.codec {
        CodecId::H264 => match h264::AvcConfig::parse(&t.config) {
            Ok(c) => c.sps.into_iter().chain(c.pps).collect(),
            Err(_) => Vec::new(),
        },
        CodecId::H265 => match h265::HevcConfig::parse(&t.config) {
            Ok(c) => [32u8, 33, 34]
                .iter()
                .flat_map(|ty| c.nals(*ty).cloned().collect::<Vec<_>>())
                .collect(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut b = BytesMut::new();
    for n in nals {
        b.put_u32(n.len() as u32);
        b.put_slice(&n);
    }
    b.freeze()
}

/// Whether a key frame carries its own SPS.
fn has_parameter_sets(f: &MediaFrame) -> bool {
    nal::LengthPrefixedNals::new(f.payload.clone()).any(|n| match (f.codec, n) {
        (CodecId::H264, Ok(n)) => h264::nal_type(&n) == 7,
        (CodecId::H265, Ok(n)) => h265::nal_type(&n) == 33,
        (_, Err(_)) => false,
        _ => true,
    })
}
