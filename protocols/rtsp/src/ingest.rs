//! Media coming in over RTP (a publisher's RECORD, or a camera we pull):
//! the tracks an SDP describes, their packets (interleaved in order, or UDP
//! through a small reorder buffer), access units out of the depacketizers,
//! and one timeline for all tracks.
//!
//! Each track has its own RTP clock with a random origin (RFC 3550 §5.1),
//! so a track's frames are placed on the session's timeline by an anchor:
//! the RTP time stamp of a known session instant. The anchor comes, best
//! first, from the server's `RTP-Info` (a pull: every track's `rtptime`
//! is the same instant), from an RTCP sender report that arrived before the
//! track's first packet (its NTP time says when; ffmpeg sends one first),
//! or from the arrival of the track's first packet. Until one of them
//! places it, a track's packets wait (at most [`ANCHOR_WAIT_US`]): over UDP
//! a report and the first packets come on different sockets in no
//! particular order, and anchoring one track by a report and another by an
//! arrival would put them out of sync by whatever the two deliveries took.

use std::collections::VecDeque;

use arcly_core::frame::{CodecId, FrameKind, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::media::codec::track_params;
use arcly_core::session::SessionEvent;
use arcly_core::time::{Instant, MediaTime, Timescale, Wrap32};
use bytes::Bytes;

use crate::payload::Depacketizer;
use crate::rtcp;
use crate::rtp::{ReorderBuffer, RtpPacket};
use crate::sdp::Description;
use crate::RtspError;

/// Where the session timeline starts, in µs (see `Ingest::session_us`).
const LEAD_US: i64 = 1_000_000;

/// How long a track's first packets wait for a sender report to place
/// them, in µs, before their arrival does.
const ANCHOR_WAIT_US: u64 = 1_000_000;
/// Packets a track holds while it waits for a sender report.
const ANCHOR_WAIT_PACKETS: usize = 1024;

/// Packets a UDP track holds waiting for a missing one.
const REORDER_PACKETS: usize = 64;
/// How long a UDP track waits for a missing packet, in microseconds.
const REORDER_WAIT_US: u64 = 100_000;

/// Decode times for video whose packets carry only presentation times
/// (RTP): with frames reordered at most `depth` deep, frame `i` in decode
/// order is decoded at the `(i - depth)`-th smallest presentation time
/// seen, which is known when frame `i` arrives (no frame decoded later is
/// shown before it) and never after the frame's own presentation. The
/// first `depth` frames step up to the first presentation time. A frame
/// shown earlier than this allows deepens `depth` by one from then on (the
/// frames until then keep rising decode times, some past their
/// presentation: the depth guessed from the configuration should be deep
/// enough).
#[derive(Debug, Default)]
pub(crate) struct DtsFromPts {
    depth: Option<usize>,
    /// Presentation times not yet used as a decode time.
    pending: std::collections::BinaryHeap<core::cmp::Reverse<i64>>,
    seen: usize,
    first: Option<i64>,
    last: Option<i64>,
}

/// At most this many frames of reordering are followed.
const MAX_REORDER: usize = 16;

impl DtsFromPts {
    fn next(&mut self, pts: i64) -> i64 {
        let depth = self.depth.unwrap_or(0);
        let first = *self.first.get_or_insert(pts);
        self.pending.push(core::cmp::Reverse(pts));
        self.seen += 1;
        let mut dts = if self.seen > depth {
            self.pending.pop().map_or(pts, |r| r.0)
        } else {
            first - (depth + 1 - self.seen) as i64
        };
        if dts > pts {
            // Deeper reordering than assumed: keep that time for a later
            // frame and follow one more frame of reordering.
            self.pending.push(core::cmp::Reverse(dts));
            self.depth = Some((depth + 1).min(MAX_REORDER));
            dts = pts;
        }
        while self.pending.len() > MAX_REORDER + 1 {
            self.pending.pop();
        }
        if let Some(last) = self.last {
            dts = dts.max(last + 1).min(pts.max(last + 1));
        }
        self.last = Some(dts);
        dts
    }
}

/// How deep a video track reorders frames, from its configuration: none
/// for H.264 Baseline (which has no B-frames), else two (x264's and x265's
/// B-pyramid), deepened by [`DtsFromPts`] when the stream shows more.
fn reorder_depth(codec: CodecId, config: Option<&Bytes>) -> usize {
    match (codec, config) {
        (CodecId::H264, Some(c)) => match arcly_core::media::codec::h264::AvcConfig::parse(c) {
            Ok(avc) if avc.profile == 66 => 0,
            _ => 2,
        },
        _ => 2,
    }
}

/// One incoming track.
#[derive(Debug)]
pub(crate) struct InTrack {
    pub(crate) id: TrackId,
    pub(crate) codec: CodecId,
    pub(crate) clock: u32,
    /// Its `a=control`.
    pub(crate) control: Option<String>,
    depack: Depacketizer,
    unwrap: Wrap32,
    /// For UDP: packets put in order.
    reorder: Option<ReorderBuffer>,
    expected_seq: Option<u16>,
    /// `(extended RTP time, session ticks in the track's clock)`.
    anchor: Option<(i64, i64)>,
    /// The anchor came from a sender report or `RTP-Info`.
    reported: bool,
    /// Packets in order, waiting for the anchor, and when the first came.
    unplaced: VecDeque<(RtpPacket, bool, Instant)>,
    first_seen: Option<Instant>,
    dts: DtsFromPts,
    /// Packets received and lost, bytes received.
    pub(crate) received: u64,
    received_bytes: u64,
    pub(crate) lost: u64,
    pub(crate) highest_seq: u16,
    pub(crate) ssrc: u32,
}

/// The incoming tracks of one session.
#[derive(Debug)]
pub(crate) struct Ingest {
    pub(crate) tracks: Vec<InTrack>,
    /// When the session's timeline starts.
    started: Instant,
    /// Unix microseconds at the session timeline's zero, once an RTCP
    /// sender report has told us.
    ntp_base: Option<i64>,
    /// How far (µs) a sender's reports place a track's first packet from
    /// its arrival, learnt from the first track placed by a report. A
    /// sender's report may map its clock a second away from when it sends
    /// (ffmpeg's does): a track whose report never came is placed by its
    /// arrival plus this, to stay in step with the others.
    lead_us: Option<i64>,
    /// A track was placed by its arrival before any lead was known: the
    /// others are too, reports or not.
    by_arrival: bool,
    /// The track set last announced.
    announced: TrackSet,
    /// Access units dropped for want of a decoder configuration.
    pub(crate) unconfigured: u64,
}

impl Ingest {
    /// The tracks of `desc` we carry (the first video track becomes track
    /// 0, the first audio track 1, others follow), timeline from `now`.
    pub(crate) fn from_sdp(desc: &Description, now: Instant) -> Result<Ingest, RtspError> {
        let mut tracks = Vec::new();
        let mut next_id = 2u8;
        for m in &desc.media {
            let Some(codec) = m.codec() else { continue };
            let clock = if m.clock_rate == 0 {
                if codec.is_video() {
                    90_000
                } else {
                    48_000
                }
            } else {
                m.clock_rate
            };
            let depack =
                Depacketizer::new(codec, clock, m.channels, &m.fmtp).map_err(RtspError::Payload)?;
            let taken = |i: u8| tracks.iter().any(|t: &InTrack| t.id.0 == i);
            let id = if codec.is_video() && !taken(0) {
                0
            } else if codec.is_audio() && !taken(1) {
                1
            } else {
                next_id += 1;
                next_id - 1
            };
            if tracks.len() >= arcly_core::frame::MAX_TRACKS {
                break;
            }
            tracks.push(InTrack {
                id: TrackId(id),
                codec,
                clock,
                control: m.control.clone(),
                depack,
                unwrap: Wrap32::new(),
                reorder: None,
                expected_seq: None,
                anchor: None,
                reported: false,
                unplaced: VecDeque::new(),
                first_seen: None,
                dts: DtsFromPts::default(),
                received: 0,
                received_bytes: 0,
                lost: 0,
                highest_seq: 0,
                ssrc: 0,
            });
        }
        if tracks.is_empty() {
            return Err(RtspError::NoTracks);
        }
        Ok(Ingest {
            tracks,
            started: now,
            ntp_base: None,
            lead_us: None,
            by_arrival: false,
            announced: TrackSet::new(),
            unconfigured: 0,
        })
    }

    /// The session timeline at `now`, in µs. It starts at [`LEAD_US`], so
    /// a track whose sender report places its first packets a little
    /// before the first instant seen still gets positive times.
    fn session_us(&self, now: Instant) -> i64 {
        LEAD_US + now.saturating_duration_since(self.started).as_micros() as i64
    }

    /// Track `i`'s packets come over UDP: put them in order.
    pub(crate) fn set_udp(&mut self, i: usize) {
        if let Some(t) = self.tracks.get_mut(i) {
            t.reorder = Some(ReorderBuffer::new(REORDER_PACKETS, REORDER_WAIT_US));
        }
    }

    /// The tracks whose configuration is known, as [`SessionEvent::Tracks`]
    /// when it changed since last announced.
    pub(crate) fn announce(&mut self, events: &mut VecDeque<SessionEvent>) {
        let mut set = TrackSet::new();
        for t in &self.tracks {
            let Some(config) = t.depack.config() else {
                continue;
            };
            let Some(ts) = Timescale::new(t.clock) else {
                continue;
            };
            let mut info = TrackInfo::new(t.id, t.codec, ts, config.clone());
            info.params = track_params(t.codec, &config).unwrap_or_default();
            let _ = set.upsert(info);
        }
        if set != self.announced && !set.is_empty() {
            self.announced = set.clone();
            events.push_back(SessionEvent::Tracks(Box::new(set)));
        }
    }

    /// Places track `i` at `rtptime` on the timeline's instant `now` (the
    /// server's `RTP-Info` for a PLAY answered at `now`).
    pub(crate) fn anchor_rtp_info(&mut self, i: usize, rtptime: u32, now: Instant) {
        let session_us = self.session_us(now);
        if let Some(t) = self.tracks.get_mut(i) {
            let ext = t.unwrap.extend(u64::from(rtptime));
            t.anchor = Some((ext, session_us * i64::from(t.clock) / 1_000_000));
            t.reported = true;
        }
    }

    /// An RTCP packet for track `i`; packets its sender report places go
    /// on as frames to `events`.
    pub(crate) fn rtcp(
        &mut self,
        now: Instant,
        i: usize,
        data: &[u8],
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        let session_us = self.session_us(now);
        for sr in rtcp::sender_reports(data) {
            let Some(t) = self.tracks.get_mut(i) else {
                return Ok(());
            };
            if t.anchor.is_some() || self.by_arrival {
                continue;
            }
            let unix = sr.unix_micros() as i64;
            let base = *self.ntp_base.get_or_insert(unix - session_us);
            let ext = t.unwrap.extend(u64::from(sr.rtp_time));
            t.anchor = Some((ext, (unix - base) * i64::from(t.clock) / 1_000_000));
            t.reported = true;
        }
        self.place(now, i, events)
    }

    /// Sends on the packets of track `i` that waited for its anchor, once
    /// it has one: from a report or `RTP-Info`, or from the first packet's
    /// arrival when none came in time or too many wait.
    fn place(
        &mut self,
        now: Instant,
        i: usize,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        self.place_or_force(now, i, false, events)
    }

    /// The media still held when the sender ends (a `TEARDOWN`, its
    /// connection closed): tracks still waiting for a report are placed by
    /// their arrival, and what the reorder buffers hold goes out in order.
    pub(crate) fn flush(
        &mut self,
        now: Instant,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        for i in 0..self.tracks.len() {
            loop {
                let t = &mut self.tracks[i];
                let Some(r) = t.reorder.as_mut() else { break };
                let Some((pkt, lost)) = r.pop(u64::MAX / 2) else {
                    break;
                };
                t.lost = r.lost();
                self.admit(now, i, pkt, lost, events)?;
            }
            self.place_or_force(now, i, true, events)?;
        }
        Ok(())
    }

    fn place_or_force(
        &mut self,
        now: Instant,
        i: usize,
        force: bool,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        let Some(t) = self.tracks.get_mut(i) else {
            return Ok(());
        };
        if t.anchor.is_none() {
            let Some(first) = t.first_seen else {
                return Ok(());
            };
            let waited = now.saturating_duration_since(first).as_micros() as u64;
            if !force
                && waited < ANCHOR_WAIT_US
                && t.unplaced.len() < ANCHOR_WAIT_PACKETS
                && !self.by_arrival
            {
                return Ok(());
            }
            let Some((pkt, _, _)) = t.unplaced.front() else {
                return Ok(());
            };
            let ext = t.unwrap.extend(u64::from(pkt.header.timestamp));
            let arrival =
                LEAD_US + first.saturating_duration_since(self.started).as_micros() as i64;
            let at = match self.lead_us {
                Some(lead) => arrival + lead,
                None => {
                    self.by_arrival = true;
                    arrival
                }
            };
            t.anchor = Some((ext, at * i64::from(t.clock) / 1_000_000));
        }
        while let Some((pkt, lost, arrival)) = self.tracks[i].unplaced.pop_front() {
            self.depacketize(arrival, i, pkt, lost, events)?;
        }
        Ok(())
    }

    /// An RTP packet for track `i`; frames and track changes go to
    /// `events`. A packet that does not parse is dropped and counted.
    pub(crate) fn rtp(
        &mut self,
        now: Instant,
        i: usize,
        data: Bytes,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        let Some(t) = self.tracks.get_mut(i) else {
            return Ok(());
        };
        let pkt = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(_) => {
                t.lost += 1;
                return Ok(());
            }
        };
        t.received += 1;
        t.received_bytes += pkt.payload.len() as u64;
        t.ssrc = pkt.header.ssrc;
        if let Some(r) = t.reorder.as_mut() {
            r.push(now.as_micros(), pkt);
        } else {
            let lost = t.expected_seq.is_some_and(|e| e != pkt.header.sequence);
            if let Some(e) = t.expected_seq {
                let gap = pkt.header.sequence.wrapping_sub(e);
                if gap < 0x8000 {
                    t.lost += u64::from(gap);
                }
            }
            t.expected_seq = Some(pkt.header.sequence.wrapping_add(1));
            self.admit(now, i, pkt, lost, events)?;
        }
        self.drain(now, i, events)
    }

    /// Releases what the reorder buffers have given up waiting for.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        for i in 0..self.tracks.len() {
            self.place(now, i, events)?;
            self.drain(now, i, events)?;
        }
        Ok(())
    }

    /// When a reorder buffer gives up on a missing packet, or a track
    /// stops waiting for a sender report.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let reorder = self
            .tracks
            .iter()
            .filter_map(|t| t.reorder.as_ref()?.next_deadline())
            .min()
            .map(Instant::from_micros);
        let anchor = self
            .tracks
            .iter()
            .filter(|t| t.anchor.is_none())
            .filter_map(|t| {
                t.first_seen
                    .map(|f| f.saturating_add(core::time::Duration::from_micros(ANCHOR_WAIT_US)))
            })
            .min();
        match (reorder, anchor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drain(
        &mut self,
        now: Instant,
        i: usize,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        loop {
            let Some(t) = self.tracks.get_mut(i) else {
                return Ok(());
            };
            let Some(r) = t.reorder.as_mut() else {
                return Ok(());
            };
            let Some((pkt, lost)) = r.pop(now.as_micros()) else {
                t.lost = r.lost();
                return Ok(());
            };
            t.lost = r.lost();
            self.admit(now, i, pkt, lost, events)?;
        }
    }

    /// Learns the sender's lead from track `i`, placed by a report, whose
    /// packet arriving at `arrival` completed a frame at RTP time `ext`. A
    /// packet leaves no earlier than its last frame's time (an AAC packet
    /// may carry several), so that frame is the one to measure.
    fn learn_lead(&mut self, i: usize, ext: i64, arrival: Instant) {
        let t = &self.tracks[i];
        if self.lead_us.is_some() || !t.reported || t.clock == 0 {
            return;
        }
        let Some((a_rtp, a_ticks)) = t.anchor else {
            return;
        };
        let placed = (a_ticks + ext - a_rtp) * 1_000_000 / i64::from(t.clock);
        self.lead_us = Some(placed - self.session_us(arrival));
    }

    /// A packet in order: on to the depacketizer once the track is placed
    /// on the timeline, else it waits.
    fn admit(
        &mut self,
        now: Instant,
        i: usize,
        pkt: RtpPacket,
        lost: bool,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        let t = &mut self.tracks[i];
        if t.anchor.is_some() && t.unplaced.is_empty() {
            t.first_seen.get_or_insert(now);
            return self.depacketize(now, i, pkt, lost, events);
        }
        t.first_seen.get_or_insert(now);
        t.unplaced.push_back((pkt, lost, now));
        self.place(now, i, events)
    }

    fn depacketize(
        &mut self,
        arrival: Instant,
        i: usize,
        pkt: RtpPacket,
        lost: bool,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), RtspError> {
        let t = &mut self.tracks[i];
        t.highest_seq = pkt.header.sequence;
        let ext = t.unwrap.extend(u64::from(pkt.header.timestamp));
        // A malformed packet drops the access unit it was in; the
        // depacketizer waits for the next key frame by itself.
        let _ = t.depack.push(&pkt, ext, lost);
        let mut changed = false;
        let mut frames = Vec::new();
        let mut last_au: Option<i64> = None;
        while let Some(au) = t.depack.pop() {
            last_au = Some(last_au.map_or(au.timestamp, |l| l.max(au.timestamp)));
            changed |= t.depack.take_config_changed();
            if t.depack.config().is_none() {
                self.unconfigured += 1;
                continue;
            }
            let (a_rtp, a_ticks) = t.anchor.unwrap_or((ext, 0));
            let pts = a_ticks + (au.timestamp - a_rtp);
            let dts = if t.codec.is_video() {
                if t.dts.depth.is_none() {
                    t.dts.depth = Some(reorder_depth(t.codec, t.depack.config().as_ref()));
                }
                t.dts.next(pts)
            } else {
                pts
            };
            let Some(ts) = Timescale::new(t.clock) else {
                continue;
            };
            frames.push(MediaFrame {
                track: t.id,
                codec: t.codec,
                kind: if t.codec.is_audio() {
                    FrameKind::Audio
                } else if au.key {
                    FrameKind::Key
                } else {
                    FrameKind::Delta
                },
                pts: MediaTime::new(pts, ts),
                dts: MediaTime::new(dts, ts),
                payload: au.data,
                discontinuity: false,
                wire: Default::default(),
            });
        }
        changed |= t.depack.take_config_changed();
        if let Some(ext) = last_au {
            self.learn_lead(i, ext, arrival);
        }
        if changed {
            self.announce(events);
        }
        for f in frames {
            if self.announced.get(f.track).is_none() {
                self.announce(events);
            }
            events.push_back(SessionEvent::Frame(f));
        }
        Ok(())
    }

    /// Packets lost over all tracks.
    pub(crate) fn lost(&self) -> u64 {
        self.tracks.iter().map(|t| t.lost).sum()
    }

    /// RTP payload bytes received over all tracks.
    pub(crate) fn received_bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.received_bytes).sum()
    }

    /// Packets received over all tracks.
    pub(crate) fn received(&self) -> u64 {
        self.tracks.iter().map(|t| t.received).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(depth: usize, pts: &[i64]) -> Vec<i64> {
        let mut d = DtsFromPts {
            depth: Some(depth),
            ..DtsFromPts::default()
        };
        pts.iter().map(|p| d.next(*p)).collect()
    }

    #[test]
    fn decode_times_rise_and_never_pass_presentation() {
        // I P B B P B B in decode order (frame units of 10).
        let pts = [0, 30, 10, 20, 60, 40, 50, 90, 70, 80];
        for depth in [0, 1, 2, 3] {
            let dts = run(depth, &pts);
            // Too shallow a guess (0 here) keeps decode times rising but
            // cannot keep them at or below presentation.
            let from = if depth == 0 { pts.len() } else { 0 };
            for (i, (d, p)) in dts.iter().zip(&pts).enumerate().skip(from) {
                assert!(
                    d <= p,
                    "depth {depth}: frame {i} dts {d} > pts {p}: {dts:?}"
                );
            }
            assert!(
                dts.windows(2).all(|w| w[0] < w[1]),
                "depth {depth}: {dts:?}"
            );
        }
        // With the right depth the decode times are the presentation
        // times in order, one step behind.
        assert_eq!(&run(1, &pts)[1..], &[0, 10, 20, 30, 40, 50, 60, 70, 80]);
        // Without reordering and no depth, decode time is presentation time.
        assert_eq!(run(0, &[0, 10, 20]), [0, 10, 20]);
    }
}
