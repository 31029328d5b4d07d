//! The transport stream demultiplexer: bytes in; tracks, frames and stream
//! events out.
//!
//! What it reads, and the clause each follows:
//!
//! * Packets (H.222.0 §2.4.3.2) with resynchronisation on the sync byte,
//!   adaptation fields (§2.4.3.4) with `discontinuity_indicator`, and
//!   `continuity_counter` checks: a duplicate packet is dropped, a gap is
//!   reported as [`TsEvent::ContinuityLoss`] and the PES it broke is dropped.
//! * PAT and PMT sections (§2.4.4.3, §2.4.4.8), CRC-checked, spanning
//!   packets when they do; the first program is demultiplexed.
//! * PES packets (§2.4.3.6), bounded by [`TsDemuxerConfig::max_pes_size`],
//!   finished as soon as `PES_packet_length` is reached or at the next
//!   unit start. PTS and DTS are extended past the 33-bit wrap with one
//!   [`Wrap33`] for the whole program, so the A/V offset survives the wrap.
//! * H.264 / H.265 Annex-B access units become 4-byte length-prefixed
//!   frames without AUD and parameter sets; the parameter sets become the
//!   track's `avcC`/`hvcC`. AAC ADTS frames become raw access units with the
//!   AudioSpecificConfig as the track configuration (LATM is reported as
//!   unsupported). Opus packets lose their control header; MP3 frames are
//!   split one per frame.
//!
//! Drain [`poll_event`](TsDemuxer::poll_event) until `None` after each
//! [`push`](TsDemuxer::push); call [`flush`](TsDemuxer::flush) at the end of
//! the input to get the last PES.

use super::pes::PesHeader;
use super::psi::{self, SectionAssembler};
use super::{
    PACKET_SIZE, PID_PAT, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_AAC_LATM, STREAM_TYPE_H264,
    STREAM_TYPE_H265, STREAM_TYPE_MPEG1_AUDIO, STREAM_TYPE_MPEG2_AUDIO, STREAM_TYPE_PRIVATE_PES,
    SYNC_BYTE,
};
use crate::frame::{CodecId, FrameKind, MediaFrame, TrackId, TrackInfo, TrackSet, MAX_TRACKS};
use crate::media::codec::aac::AdtsHeader;
use crate::media::codec::nal::AnnexBNals;
use crate::media::codec::opus::{packet_samples, OpusHead};
use crate::media::codec::{self, h264, h265, mp3, CodecError};
use crate::time::{rescale, MediaTime, Timescale, Wrap33};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

/// What was wrong with a part of the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// A PSI section failed its CRC-32.
    #[error("PSI section CRC mismatch")]
    Crc,
    /// A PSI section is malformed.
    #[error("PSI: {0}")]
    Psi(&'static str),
    /// A PES packet is malformed.
    #[error("PES: {0}")]
    Pes(&'static str),
    /// A PES packet grew past the configured bound.
    #[error("PES packet larger than {0} bytes")]
    PesTooLarge(usize),
    /// An adaptation field is longer than its packet.
    #[error("adaptation field longer than the packet")]
    AdaptationField,
    /// The elementary stream inside a PES is malformed.
    #[error("elementary stream: {0}")]
    Codec(#[from] CodecError),
}

/// Demuxer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsDemuxerConfig {
    /// The largest PES packet accepted (bytes); a larger one is dropped and
    /// reported.
    pub max_pes_size: usize,
}

impl Default for TsDemuxerConfig {
    fn default() -> Self {
        TsDemuxerConfig {
            max_pes_size: 4 << 20,
        }
    }
}

/// Something the demuxer found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsEvent {
    /// A track became known or its configuration changed. Every frame of
    /// a track comes after its first `Track` event.
    Track(TrackInfo),
    /// A frame in the canonical form of its codec.
    Frame(MediaFrame),
    /// Packets were lost on a PID (a continuity counter skipped).
    ContinuityLoss {
        /// The PID.
        pid: u16,
        /// The counter expected.
        expected: u8,
        /// The counter found.
        got: u8,
    },
    /// The `discontinuity_indicator` was set on the PCR PID: time stamps
    /// restart; the next frame of every track is marked `discontinuity`.
    Discontinuity {
        /// The PID that carried the indicator.
        pid: u16,
    },
    /// An elementary stream this demuxer cannot read (reported once per PID).
    Unsupported {
        /// The PID.
        pid: u16,
        /// Its `stream_type`.
        stream_type: u8,
        /// Why.
        reason: &'static str,
    },
    /// Bytes were skipped to find the next sync byte.
    SyncLoss {
        /// How many.
        skipped: usize,
    },
    /// Part of the stream was malformed and dropped.
    Error {
        /// The PID it was on.
        pid: u16,
        /// What was wrong.
        error: TsError,
    },
}

#[derive(Clone, Debug)]
enum EsState {
    H264 {
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    },
    H265 {
        vps: Vec<Bytes>,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    },
    Aac,
    Opus {
        channels: u8,
    },
    Mp3,
}

#[derive(Clone, Debug)]
struct Stream {
    pid: u16,
    stream_type: u8,
    track: TrackId,
    codec: CodecId,
    es: EsState,
    pes: BytesMut,
    pes_active: bool,
    expected_len: Option<usize>,
    cc: Option<u8>,
    info: Option<TrackInfo>,
    discontinuity: bool,
    /// The ADTS header fields the AAC config was last built from.
    adts_key: Option<(u8, u8, u8)>,
    /// An audio frame cut by the end of its PES (some muxers split ADTS and
    /// MPEG audio frames across PES packets), with its time stamp.
    carry: Option<(i64, Bytes)>,
}

/// The MPEG-TS demultiplexer. See the module docs.
#[derive(Debug)]
pub struct TsDemuxer {
    config: TsDemuxerConfig,
    partial: Vec<u8>,
    pat: SectionAssembler,
    pmt_pid: Option<u16>,
    pmt: SectionAssembler,
    pmt_version: Option<u8>,
    last_pmt_section: Vec<u8>,
    pcr_pid: Option<u16>,
    streams: heapless::Vec<Stream, MAX_TRACKS>,
    unsupported: Vec<u16>,
    clock: Wrap33,
    events: VecDeque<TsEvent>,
    dropped_before_config: u64,
}

impl TsDemuxer {
    /// Reads a whole MPEG-TS buffer (a file, a capture) with the default
    /// configuration: the track set as it stands at the end, and every
    /// frame in order.
    pub fn read_all(data: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
        Self::read_all_with(TsDemuxerConfig::default(), data)
    }

    /// [`read_all`](Self::read_all) with a configuration of the caller's.
    pub fn read_all_with(config: TsDemuxerConfig, data: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
        let mut d = TsDemuxer::new(config);
        d.push(data);
        d.flush();
        let mut tracks = TrackSet::new();
        let mut frames = Vec::new();
        while let Some(e) = d.poll_event() {
            match e {
                // The demuxer holds at most as many streams as a set can.
                TsEvent::Track(t) => {
                    let _ = tracks.upsert(t);
                }
                TsEvent::Frame(f) => frames.push(f),
                _ => {}
            }
        }
        (tracks, frames)
    }

    /// A demuxer that has seen nothing.
    pub fn new(config: TsDemuxerConfig) -> Self {
        TsDemuxer {
            config,
            partial: Vec::with_capacity(PACKET_SIZE),
            pat: SectionAssembler::default(),
            pmt_pid: None,
            pmt: SectionAssembler::default(),
            pmt_version: None,
            last_pmt_section: Vec::new(),
            pcr_pid: None,
            streams: heapless::Vec::new(),
            unsupported: Vec::new(),
            clock: Wrap33::new(),
            events: VecDeque::new(),
            dropped_before_config: 0,
        }
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TsEvent> {
        self.events.pop_front()
    }

    /// Video frames dropped because no parameter sets had been seen yet.
    pub fn dropped_before_config(&self) -> u64 {
        self.dropped_before_config
    }

    /// Feeds bytes of the transport stream, in any chunking.
    pub fn push(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let need = PACKET_SIZE - self.partial.len();
            let n = need.min(data.len());
            self.partial.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.partial.len() < PACKET_SIZE {
                return;
            }
            let p = core::mem::take(&mut self.partial);
            if p[0] == SYNC_BYTE {
                self.packet(&p);
            } else {
                self.events.push_back(TsEvent::SyncLoss {
                    skipped: PACKET_SIZE,
                });
            }
            self.partial = p;
            self.partial.clear();
        }
        while !data.is_empty() {
            if data[0] != SYNC_BYTE {
                // Resynchronise: the next sync byte that is followed by
                // another one a packet later (or ends the data).
                let skip = (1..data.len())
                    .find(|&i| {
                        data[i] == SYNC_BYTE
                            && matches!(data.get(i + PACKET_SIZE), None | Some(&SYNC_BYTE))
                    })
                    .unwrap_or(data.len());
                self.events.push_back(TsEvent::SyncLoss { skipped: skip });
                data = &data[skip..];
                continue;
            }
            if data.len() < PACKET_SIZE {
                self.partial.extend_from_slice(data);
                return;
            }
            let (p, rest) = data.split_at(PACKET_SIZE);
            self.packet(p);
            data = rest;
        }
    }

    /// Finishes every PES in progress (call at the end of the input).
    pub fn flush(&mut self) {
        for i in 0..self.streams.len() {
            self.finish_pes(i);
        }
    }

    fn packet(&mut self, p: &[u8]) {
        if p[1] & 0x80 != 0 {
            return; // transport_error_indicator: the packet is known bad
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
        let afc = (p[3] >> 4) & 3;
        let cc = p[3] & 0xF;
        let mut offset = 4;
        let mut discontinuity = false;
        if afc & 2 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > PACKET_SIZE {
                self.events.push_back(TsEvent::Error {
                    pid,
                    error: TsError::AdaptationField,
                });
                return;
            }
            if len > 0 {
                discontinuity = p[5] & 0x80 != 0;
            }
            offset = 5 + len;
        }
        if discontinuity && Some(pid) == self.pcr_pid {
            self.clock = Wrap33::new();
            for s in self.streams.iter_mut() {
                s.discontinuity = true;
            }
            self.events.push_back(TsEvent::Discontinuity { pid });
        }
        if afc & 1 == 0 {
            return;
        }
        let payload = &p[offset..];
        if pid == PID_PAT {
            let mut found = None;
            self.pat
                .push(pusi, payload, |sec| found = Some(psi::parse_pat(sec)));
            match found {
                Some(Ok(programs)) => {
                    if let Some(&(_, pmt_pid)) = programs.first() {
                        if self.pmt_pid != Some(pmt_pid) {
                            self.pmt_pid = Some(pmt_pid);
                            self.pmt.reset();
                            self.pmt_version = None;
                            self.last_pmt_section.clear();
                        }
                    }
                }
                Some(Err(error)) => self.events.push_back(TsEvent::Error { pid, error }),
                None => {}
            }
            return;
        }
        if Some(pid) == self.pmt_pid {
            let mut found = Vec::new();
            let last = &self.last_pmt_section;
            self.pmt.push(pusi, payload, |sec| {
                // A repetition of the PMT in force needs no CRC or parsing.
                if sec != last.as_slice() {
                    found.push((psi::parse_pmt(sec), sec.to_vec()));
                }
            });
            for (r, sec) in found {
                match r {
                    Ok(pmt) => {
                        self.last_pmt_section = sec;
                        self.on_pmt(pmt);
                    }
                    Err(error) => self.events.push_back(TsEvent::Error { pid, error }),
                }
            }
            return;
        }
        let Some(idx) = self.streams.iter().position(|s| s.pid == pid) else {
            return;
        };
        // Continuity (§2.4.3.3): duplicates once, gaps reported.
        let s = &mut self.streams[idx];
        if let Some(last) = s.cc {
            let expected = (last + 1) & 0xF;
            if cc == last && !discontinuity {
                return; // duplicate packet
            }
            if cc != expected && !discontinuity {
                self.events.push_back(TsEvent::ContinuityLoss {
                    pid,
                    expected,
                    got: cc,
                });
                s.pes.clear();
                s.pes_active = false;
                s.carry = None;
            }
        }
        s.cc = Some(cc);
        if pusi {
            self.finish_pes(idx);
            let s = &mut self.streams[idx];
            s.pes.clear();
            s.pes_active = true;
            s.expected_len = None;
        }
        let max = self.config.max_pes_size;
        let s = &mut self.streams[idx];
        if !s.pes_active {
            return;
        }
        if s.pes.len() + payload.len() > max {
            s.pes.clear();
            s.pes_active = false;
            self.events.push_back(TsEvent::Error {
                pid,
                error: TsError::PesTooLarge(max),
            });
            return;
        }
        s.pes.extend_from_slice(payload);
        if s.expected_len.is_none() && s.pes.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([s.pes[4], s.pes[5]]));
            if len > 0 {
                s.expected_len = Some(6 + len);
            }
        }
        if s.expected_len.is_some_and(|l| s.pes.len() >= l) {
            self.finish_pes(idx);
        }
    }

    fn report_unsupported(&mut self, pid: u16, stream_type: u8, reason: &'static str) {
        if !self.unsupported.contains(&pid) && self.unsupported.len() < 64 {
            self.unsupported.push(pid);
            self.events.push_back(TsEvent::Unsupported {
                pid,
                stream_type,
                reason,
            });
        }
    }

    fn on_pmt(&mut self, pmt: psi::Pmt) {
        if self.pmt_version == Some(pmt.version) {
            return;
        }
        self.pmt_version = Some(pmt.version);
        self.pcr_pid = Some(pmt.pcr_pid);
        let mut next: heapless::Vec<Stream, MAX_TRACKS> = heapless::Vec::new();
        let kept: Vec<(TrackId, bool)> = pmt
            .streams
            .iter()
            .filter_map(|ps| {
                self.streams
                    .iter()
                    .find(|s| s.pid == ps.pid && s.stream_type == ps.stream_type)
                    .map(|s| (s.track, s.codec.is_video()))
            })
            .collect();
        for ps in &pmt.streams {
            if let Some(old) = self
                .streams
                .iter()
                .find(|s| s.pid == ps.pid && s.stream_type == ps.stream_type)
            {
                let _ = next.push(old.clone());
                continue;
            }
            let (codec, es) = match ps.stream_type {
                STREAM_TYPE_H264 => (
                    CodecId::H264,
                    EsState::H264 {
                        sps: Vec::new(),
                        pps: Vec::new(),
                    },
                ),
                STREAM_TYPE_H265 => (
                    CodecId::H265,
                    EsState::H265 {
                        vps: Vec::new(),
                        sps: Vec::new(),
                        pps: Vec::new(),
                    },
                ),
                STREAM_TYPE_AAC_ADTS => (CodecId::Aac, EsState::Aac),
                STREAM_TYPE_MPEG1_AUDIO | STREAM_TYPE_MPEG2_AUDIO => (CodecId::Mp3, EsState::Mp3),
                STREAM_TYPE_AAC_LATM => {
                    self.report_unsupported(
                        ps.pid,
                        ps.stream_type,
                        "AAC in LATM/LOAS (stream type 0x11) is not supported; only ADTS (0x0F)",
                    );
                    continue;
                }
                STREAM_TYPE_PRIVATE_PES => {
                    let mut opus = false;
                    let mut channels = 2;
                    for (tag, body) in psi::descriptors(&ps.descriptors) {
                        if tag == 0x05 && body.starts_with(b"Opus") {
                            opus = true;
                        }
                        if tag == 0x7F && body.len() >= 2 && body[0] == 0x80 {
                            channels = match body[1] {
                                c @ 1..=8 => c,
                                c @ 0x81..=0x88 => c & 0xF,
                                _ => 0,
                            };
                        }
                    }
                    if !opus {
                        self.report_unsupported(
                            ps.pid,
                            ps.stream_type,
                            "private PES without a registration this demuxer reads",
                        );
                        continue;
                    }
                    if channels == 0 {
                        self.report_unsupported(
                            ps.pid,
                            ps.stream_type,
                            "Opus channel configuration",
                        );
                        continue;
                    }
                    (CodecId::Opus, EsState::Opus { channels })
                }
                _ => {
                    self.report_unsupported(ps.pid, ps.stream_type, "stream type");
                    continue;
                }
            };
            // Ids of the streams kept from the previous PMT and of those
            // placed already: a new stream never takes one of them.
            let used: Vec<TrackId> = next
                .iter()
                .map(|s| s.track)
                .chain(kept.iter().map(|&(id, _)| id))
                .collect();
            let same_kind = next
                .iter()
                .map(|s| s.codec.is_video())
                .chain(kept.iter().map(|&(_, video)| video))
                .any(|video| video == codec.is_video());
            let preferred = if codec.is_video() { 0 } else { 1 };
            let track = if !used.contains(&TrackId(preferred)) && !same_kind {
                TrackId(preferred)
            } else {
                (2u8..)
                    .map(TrackId)
                    .find(|t| !used.contains(t))
                    .unwrap_or(TrackId(255))
            };
            let _ = next.push(Stream {
                pid: ps.pid,
                stream_type: ps.stream_type,
                track,
                codec,
                es,
                pes: BytesMut::new(),
                pes_active: false,
                expected_len: None,
                cc: None,
                info: None,
                discontinuity: false,
                adts_key: None,
                carry: None,
            });
        }
        self.streams = next;
    }

    fn finish_pes(&mut self, idx: usize) {
        let s = &mut self.streams[idx];
        if !s.pes_active || s.pes.is_empty() {
            s.pes_active = false;
            return;
        }
        s.pes_active = false;
        let data = s.pes.split().freeze();
        let pid = s.pid;
        let h = match PesHeader::parse(&data) {
            Ok(h) => h,
            Err(error) => {
                self.events.push_back(TsEvent::Error { pid, error });
                return;
            }
        };
        let Some(pts) = h.pts else {
            self.events.push_back(TsEvent::Error {
                pid,
                error: TsError::Pes("PES without PTS"),
            });
            return;
        };
        let end = match s.expected_len {
            Some(l) => l.min(data.len()),
            None => data.len(),
        };
        if h.payload_offset > end {
            self.events.push_back(TsEvent::Error {
                pid,
                error: TsError::Pes("header longer than the packet"),
            });
            return;
        }
        let (dts, pts) = match h.dts {
            Some(d) => {
                let dts = self.clock.extend(d);
                let mut off = (pts as i64 - d as i64).rem_euclid(1 << 33);
                if off >= 1 << 32 {
                    off -= 1 << 33;
                }
                (dts, dts + off)
            }
            None => {
                let p = self.clock.extend(pts);
                (p, p)
            }
        };
        let payload = data.slice(h.payload_offset..end);
        if let Err(error) = self.elementary(idx, pts, dts, payload) {
            self.events.push_back(TsEvent::Error { pid, error });
        }
    }

    fn emit_track(
        &mut self,
        idx: usize,
        config: Bytes,
        params: Result<crate::frame::TrackParams, CodecError>,
    ) {
        let s = &mut self.streams[idx];
        if s.info.as_ref().is_some_and(|i| i.config == config) {
            return;
        }
        let mut info = TrackInfo::new(s.track, s.codec, Timescale::MPEG, config);
        if let Ok(p) = params {
            info.params = p;
        }
        s.info = Some(info.clone());
        self.events.push_back(TsEvent::Track(info));
    }

    fn emit_frame(&mut self, idx: usize, kind: FrameKind, pts: i64, dts: i64, payload: Bytes) {
        let s = &mut self.streams[idx];
        let frame = MediaFrame {
            track: s.track,
            codec: s.codec,
            kind,
            pts: MediaTime::new(pts, Timescale::MPEG),
            dts: MediaTime::new(dts, Timescale::MPEG),
            payload,
            discontinuity: core::mem::take(&mut s.discontinuity),
            wire: Default::default(),
        };
        self.events.push_back(TsEvent::Frame(frame));
    }

    fn elementary(
        &mut self,
        idx: usize,
        pts: i64,
        dts: i64,
        payload: Bytes,
    ) -> Result<(), TsError> {
        let (pts, payload) = match self.streams[idx].carry.take() {
            Some((carry_pts, head)) => {
                let mut joined = BytesMut::with_capacity(head.len() + payload.len());
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&payload);
                (carry_pts, joined.freeze())
            }
            None => (pts, payload),
        };
        match self.streams[idx].codec {
            CodecId::H264 | CodecId::H265 => self.video(idx, pts, dts, payload),
            CodecId::Aac => self.aac(idx, pts, payload),
            CodecId::Opus => self.opus(idx, pts, payload),
            CodecId::Mp3 => self.mp3(idx, pts, payload),
            _ => Ok(()),
        }
    }

    fn video(&mut self, idx: usize, pts: i64, dts: i64, payload: Bytes) -> Result<(), TsError> {
        let h265 = self.streams[idx].codec == CodecId::H265;
        let mut out = BytesMut::with_capacity(payload.len() + 16);
        let mut key = false;
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        for nal in AnnexBNals::new(payload) {
            if h265 {
                let t = h265::nal_type(&nal);
                match t {
                    h265::NAL_AUD => continue,
                    h265::NAL_VPS => vps.push(nal),
                    h265::NAL_SPS => sps.push(nal),
                    h265::NAL_PPS => pps.push(nal),
                    _ => {
                        key |= h265::is_irap(t);
                        out.put_u32(nal.len() as u32);
                        out.extend_from_slice(&nal);
                    }
                }
            } else {
                let t = h264::nal_type(&nal);
                match t {
                    h264::NAL_AUD => continue,
                    h264::NAL_SPS => sps.push(nal),
                    h264::NAL_PPS => pps.push(nal),
                    _ => {
                        key |= t == h264::NAL_IDR;
                        out.put_u32(nal.len() as u32);
                        out.extend_from_slice(&nal);
                    }
                }
            }
        }
        const MAX: usize = h264::MAX_PARAMETER_SETS;
        if vps.len() > MAX || sps.len() > MAX || pps.len() > MAX {
            return Err(TsError::Codec(CodecError::Invalid(
                "too many parameter sets in one access unit",
            )));
        }
        let changed = {
            let s = &mut self.streams[idx];
            let mut changed = false;
            let mut replace = |cur: &mut Vec<Bytes>, new: Vec<Bytes>| {
                if !new.is_empty() && *cur != new {
                    *cur = new;
                    changed = true;
                }
            };
            match &mut s.es {
                EsState::H264 { sps: cs, pps: cp } => {
                    replace(cs, sps);
                    replace(cp, pps);
                }
                EsState::H265 {
                    vps: cv,
                    sps: cs,
                    pps: cp,
                } => {
                    replace(cv, vps);
                    replace(cs, sps);
                    replace(cp, pps);
                }
                _ => {}
            }
            changed
        };
        if changed {
            let config = match &self.streams[idx].es {
                EsState::H264 { sps, pps } if !pps.is_empty() => Some(
                    h264::AvcConfig::from_parameter_sets(sps.clone(), pps.clone())
                        .map(|c| c.to_bytes()),
                ),
                EsState::H265 { vps, sps, pps } if !pps.is_empty() && !vps.is_empty() => Some(
                    h265::HevcConfig::from_parameter_sets(vps.clone(), sps.clone(), pps.clone())
                        .map(|c| c.to_bytes()),
                ),
                _ => None,
            };
            match config {
                Some(Ok(config)) => {
                    let codec = self.streams[idx].codec;
                    let params = codec::track_params(codec, &config);
                    self.emit_track(idx, config, params);
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        if self.streams[idx].info.is_none() {
            self.dropped_before_config += 1;
            return Ok(());
        }
        if out.is_empty() {
            return Ok(());
        }
        let kind = if key {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        self.emit_frame(idx, kind, pts, dts, out.freeze());
        Ok(())
    }

    fn aac(&mut self, idx: usize, pts: i64, payload: Bytes) -> Result<(), TsError> {
        let mut pos = 0;
        let mut n = 0i64;
        let mut frame_samples = 1024;
        let mut rate = Timescale::MPEG;
        while pos < payload.len() {
            let rest = payload.len() - pos;
            let cut = if rest < 7 {
                true
            } else {
                let h = AdtsHeader::parse(&payload[pos..])?;
                h.frame_len > rest
            };
            if cut {
                // The frame continues in the next PES of this stream.
                if rest > MAX_CARRY {
                    return Err(TsError::Codec(CodecError::Truncated("ADTS frame")));
                }
                let t = pts + rescale(n * frame_samples, rate, Timescale::MPEG);
                self.streams[idx].carry = Some((t, payload.slice(pos..)));
                return Ok(());
            }
            let h = AdtsHeader::parse(&payload[pos..])?;
            let asc = h.config();
            frame_samples = i64::from(asc.frame_samples());
            let key = (h.object_type, h.sample_rate_index, h.channel_config);
            if self.streams[idx].adts_key != Some(key) {
                self.streams[idx].adts_key = Some(key);
                self.emit_track(idx, asc.to_bytes(), Ok(asc.params()));
            }
            let raw = payload.slice(pos + h.header_len..pos + h.frame_len);
            rate = Timescale::new(asc.sample_rate).unwrap_or(Timescale::MPEG);
            let t = pts + rescale(n * frame_samples, rate, Timescale::MPEG);
            self.emit_frame(idx, FrameKind::Audio, t, t, raw);
            pos += h.frame_len;
            n += 1;
        }
        Ok(())
    }

    fn opus(&mut self, idx: usize, pts: i64, payload: Bytes) -> Result<(), TsError> {
        let EsState::Opus { channels } = self.streams[idx].es else {
            return Ok(());
        };
        let d = &payload[..];
        if self.streams[idx].info.is_none() {
            // The first packet's start trim is the decoder's pre-skip.
            let pre_skip = opus_start_trim(d).unwrap_or(0);
            let head = OpusHead::new(channels, pre_skip, 48_000);
            self.emit_track(idx, head.to_bytes(), Ok(head.params()));
        }
        let mut pos = 0;
        let mut t = pts;
        let trunc = || TsError::Codec(CodecError::Truncated("opus_control_header"));
        while pos < d.len() {
            if d.len() - pos < 2 || d[pos] != 0x7F || d[pos + 1] & 0xE0 != 0xE0 {
                return Err(TsError::Codec(CodecError::Invalid(
                    "opus_control_header prefix",
                )));
            }
            let flags = d[pos + 1];
            pos += 2;
            let mut size = 0usize;
            loop {
                let b = *d.get(pos).ok_or_else(trunc)?;
                pos += 1;
                size += usize::from(b);
                if b != 255 {
                    break;
                }
            }
            if flags & 0x10 != 0 {
                pos += 2; // start trim: the track's pre-skip, read above
            }
            if flags & 0x08 != 0 {
                pos += 2;
            }
            if flags & 0x04 != 0 {
                let l = usize::from(*d.get(pos).ok_or_else(trunc)?);
                pos += 1 + l;
            }
            if pos > d.len() || d.len() - pos < size {
                return Err(trunc());
            }
            let packet = payload.slice(pos..pos + size);
            pos += size;
            let samples = packet_samples(&packet).unwrap_or(960);
            self.emit_frame(idx, FrameKind::Audio, t, t, packet);
            t += i64::from(samples) * 15 / 8;
        }
        Ok(())
    }

    fn mp3(&mut self, idx: usize, pts: i64, payload: Bytes) -> Result<(), TsError> {
        let mut pos = 0;
        let mut t = pts;
        while pos < payload.len() {
            let rest = payload.len() - pos;
            let cut = rest < 4 || mp3::FrameHeader::parse(&payload[pos..])?.frame_len > rest;
            if cut {
                if rest > MAX_CARRY {
                    return Err(TsError::Codec(CodecError::Truncated("MPEG audio frame")));
                }
                self.streams[idx].carry = Some((t, payload.slice(pos..)));
                return Ok(());
            }
            let h = mp3::FrameHeader::parse(&payload[pos..])?;
            if h.layer != 3 {
                let (pid, st) = (self.streams[idx].pid, self.streams[idx].stream_type);
                self.report_unsupported(pid, st, "MPEG audio layer I/II (only layer III is read)");
                return Ok(());
            }
            if h.frame_len < 4 || h.frame_len > payload.len() - pos {
                return Err(TsError::Codec(CodecError::Truncated("MPEG audio frame")));
            }
            let mut params = crate::frame::TrackParams {
                sample_rate: h.sample_rate,
                channels: h.channels,
                ..Default::default()
            };
            codec::push_str(&mut params.codec_string, "mp4a.40.34");
            // The track changes only if the rate or channel count does.
            let s = &self.streams[idx];
            let changed = match &s.info {
                None => true,
                Some(i) => i.params.sample_rate != h.sample_rate || i.params.channels != h.channels,
            };
            if changed {
                let mut info = TrackInfo::new(s.track, s.codec, Timescale::MPEG, Bytes::new());
                info.params = params;
                self.streams[idx].info = Some(info.clone());
                self.events.push_back(TsEvent::Track(info));
            }
            self.emit_frame(
                idx,
                FrameKind::Audio,
                t,
                t,
                payload.slice(pos..pos + h.frame_len),
            );
            t += rescale(
                i64::from(h.samples),
                Timescale::new(h.sample_rate).unwrap_or(Timescale::MPEG),
                Timescale::MPEG,
            );
            pos += h.frame_len;
        }
        Ok(())
    }
}

/// The most bytes of a cut audio frame kept for the next PES (an ADTS frame
/// is at most 8191 bytes; an MPEG audio frame less).
const MAX_CARRY: usize = 8192;

/// The start trim of the first `opus_control_header` in `d`, if it has one.
fn opus_start_trim(d: &[u8]) -> Option<u16> {
    if d.len() < 3 || d[0] != 0x7F || d[1] & 0xF0 != 0xF0 {
        return None;
    }
    let mut pos = 2;
    while *d.get(pos)? == 255 {
        pos += 1;
    }
    pos += 1;
    Some(u16::from_be_bytes([*d.get(pos)?, *d.get(pos + 1)?]))
}

#[cfg(test)]
pub(crate) mod tests;
