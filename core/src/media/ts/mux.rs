//! The transport stream multiplexer: frames in, 188-byte packets out.
//!
//! One program with up to [`MAX_TRACKS`]
//! elementary streams. What it writes, and the clause each follows:
//!
//! * PAT and PMT (H.222.0 §2.4.4.3, §2.4.4.8) before the first frame, at
//!   every [`TsMuxer::start_segment`], and again whenever
//!   [`TsMuxerConfig::psi_interval`] of time has passed (100 ms by default).
//! * PCR (§2.4.3.5) in the adaptation field of every frame on the PCR PID
//!   (the first video stream, else the first audio stream), plus a PCR-only
//!   packet whenever another stream's frame would otherwise leave more than
//!   [`TsMuxerConfig::pcr_interval`] (33 ms, so that no gap reaches 40 ms) without one.
//! * `random_access_indicator` (§2.4.3.5) on the first packet of every video
//!   key frame (and of every audio frame in an audio-only program).
//! * H.264 (§2.14) and H.265 (§2.17) as Annex-B access units that start with
//!   an access unit delimiter; key frames carry the parameter sets of the
//!   track configuration before their first slice. PES_packet_length is 0
//!   when a video PES exceeds 65535 bytes (§2.4.3.7 allows it for video).
//! * AAC with an ADTS header per frame built from the AudioSpecificConfig.
//! * Opus as private_stream_1 with the `Opus` registration descriptor, the
//!   extension descriptor carrying `channel_config_code`, and the
//!   `opus_control_header` before each packet, with the pre-skip as start
//!   trim on the first packets (the ETSI Opus transport multiplexing draft
//!   v0.1.3, as ffmpeg writes it).
//! * MP3 frames as they are, stream type 0x03.
//!
//! Continuity counters run per PID and only advance on packets with payload.

use super::pes::{self, STREAM_ID_AUDIO, STREAM_ID_PRIVATE_1, STREAM_ID_VIDEO};
use super::psi::{self, Pmt, PmtStream};
use super::{
    PACKET_SIZE, PID_PAT, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_H265,
    STREAM_TYPE_MPEG1_AUDIO, STREAM_TYPE_PRIVATE_PES, SYNC_BYTE,
};
use crate::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet, MAX_TRACKS};
use crate::media::codec::aac::{AdtsHeader, AudioSpecificConfig};
use crate::media::codec::nal::LengthPrefixedNals;
use crate::media::codec::opus::OpusHead;
use crate::media::codec::{h264, h265, CodecError};
use crate::time::Timescale;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

/// Why a track or a frame cannot be multiplexed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsMuxError {
    /// The codec has no mapping into MPEG-TS here (AV1, VP9).
    #[error("codec {0:?} cannot be carried in MPEG-TS by this muxer")]
    UnsupportedCodec(CodecId),
    /// A frame names a track the muxer was not given.
    #[error("unknown track {0:?}")]
    UnknownTrack(TrackId),
    /// The track set is empty or too large.
    #[error("a program needs 1 to {MAX_TRACKS} tracks")]
    TrackCount,
    /// A track's configuration or a frame's payload is malformed.
    #[error("track {track:?}: {source}")]
    Codec {
        /// The track.
        track: TrackId,
        /// What was wrong.
        source: CodecError,
    },
}

/// Muxer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsMuxerConfig {
    /// `transport_stream_id` in the PAT.
    pub transport_stream_id: u16,
    /// The program's `program_number`.
    pub program_number: u16,
    /// The PMT's PID.
    pub pmt_pid: u16,
    /// The first elementary stream's PID; the others follow.
    pub first_es_pid: u16,
    /// How far (90 kHz ticks) the PCR runs behind the DTS of the frame it is
    /// sent with: the decoder's buffering time.
    pub pcr_delay: u32,
    /// Longest PCR gap, 90 kHz ticks.
    pub pcr_interval: u32,
    /// Longest gap between PAT/PMT repetitions, 90 kHz ticks.
    pub psi_interval: u32,
    /// AAC and MP3 frames carried per PES packet (1 to 32); the frames of
    /// one PES are taken to follow each other without gaps (the PES carries
    /// the first one's PTS). More than one
    /// saves the PES header and the stuffing of a packet per frame (audio
    /// at 64 kbit/s otherwise takes about twice its rate on the wire) at the
    /// cost of holding frames back: call [`TsMuxer::flush`] at the end of a
    /// segment and of the stream.
    pub audio_frames_per_pes: u8,
}

impl Default for TsMuxerConfig {
    fn default() -> Self {
        TsMuxerConfig {
            transport_stream_id: 1,
            program_number: 1,
            pmt_pid: 0x1000,
            first_es_pid: 0x100,
            pcr_delay: 9_000,
            // Aim at 33 ms so that the gaps stay under 40 ms even when the
            // frame spacing changes between two frames.
            pcr_interval: 3_000,
            psi_interval: 9_000,
            audio_frames_per_pes: 1,
        }
    }
}

#[derive(Clone, Debug)]
enum EsKind {
    /// Annex-B video: the AUD and the parameter sets sent before key frames.
    Video {
        aud: &'static [u8],
        params: Bytes,
        h265: bool,
    },
    Aac(AudioSpecificConfig),
    /// Opus with the pre-skip samples still to signal as start trim.
    Opus {
        trim_pending: u16,
    },
    Mp3,
}

#[derive(Clone, Debug)]
struct Es {
    track: TrackId,
    pid: u16,
    stream_id: u8,
    cc: u8,
    kind: EsKind,
    /// Audio frames held for the next PES (see `audio_frames_per_pes`).
    pending: Vec<MediaFrame>,
}

/// The MPEG-TS multiplexer. See the module docs for what it writes.
///
/// Sans-IO: [`write_frame`](TsMuxer::write_frame) appends whole packets to a
/// buffer the caller owns and drains.
#[derive(Clone, Debug)]
pub struct TsMuxer {
    config: TsMuxerConfig,
    streams: heapless::Vec<Es, MAX_TRACKS>,
    pmt: Pmt,
    /// The PAT section followed by the PMT section, once built.
    sections: BytesMut,
    pat_len: usize,
    pcr_pid: u16,
    audio_only: bool,
    pat_cc: u8,
    pmt_cc: u8,
    last_pcr: Option<i64>,
    last_dts: Option<i64>,
    last_step: i64,
    last_psi: Option<i64>,
    force_psi: bool,
    /// Audio held before `start_segment` belongs to the segment before.
    flush_before_psi: bool,
    scratch: BytesMut,
}

const AUD_H264: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0];
const AUD_H265: &[u8] = &[0, 0, 0, 1, 0x46, 0x01, 0x50];

fn annex_b_params<'a>(nals: impl Iterator<Item = &'a Bytes>) -> Bytes {
    let mut b = BytesMut::new();
    for n in nals {
        b.put_u32(1);
        b.extend_from_slice(n);
    }
    b.freeze()
}

fn es_kind(t: &TrackInfo) -> Result<(EsKind, u8, u8, Vec<u8>), TsMuxError> {
    let codec_err = |source| TsMuxError::Codec {
        track: t.id,
        source,
    };
    Ok(match t.codec {
        CodecId::H264 => {
            let c = h264::AvcConfig::parse(&t.config).map_err(codec_err)?;
            let params = annex_b_params(c.sps.iter().chain(c.pps.iter()));
            (
                EsKind::Video {
                    aud: AUD_H264,
                    params,
                    h265: false,
                },
                STREAM_TYPE_H264,
                STREAM_ID_VIDEO,
                Vec::new(),
            )
        }
        CodecId::H265 => {
            let c = h265::HevcConfig::parse(&t.config).map_err(codec_err)?;
            let params = annex_b_params(c.arrays.iter().flat_map(|(_, n)| n.iter()));
            (
                EsKind::Video {
                    aud: AUD_H265,
                    params,
                    h265: true,
                },
                STREAM_TYPE_H265,
                STREAM_ID_VIDEO,
                Vec::new(),
            )
        }
        CodecId::Aac => {
            let asc = AudioSpecificConfig::parse(&t.config).map_err(codec_err)?;
            // Fail now rather than on the first frame if ADTS cannot say it.
            AdtsHeader::for_config(&asc, 0).map_err(codec_err)?;
            (
                EsKind::Aac(asc),
                STREAM_TYPE_AAC_ADTS,
                STREAM_ID_AUDIO,
                Vec::new(),
            )
        }
        CodecId::Opus => {
            let head = OpusHead::parse(&t.config).map_err(codec_err)?;
            let code = match (head.mapping_family, head.channels) {
                (0, c @ 1..=2) => c,
                (1, c @ 1..=8) => c,
                _ => {
                    return Err(codec_err(CodecError::Unsupported(
                        "Opus channel mapping in MPEG-TS",
                    )))
                }
            };
            let desc = alloc::vec![0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, code];
            (
                EsKind::Opus {
                    trim_pending: head.pre_skip,
                },
                STREAM_TYPE_PRIVATE_PES,
                STREAM_ID_PRIVATE_1,
                desc,
            )
        }
        CodecId::Mp3 => (
            EsKind::Mp3,
            STREAM_TYPE_MPEG1_AUDIO,
            STREAM_ID_AUDIO,
            Vec::new(),
        ),
        other => return Err(TsMuxError::UnsupportedCodec(other)),
    })
}

impl TsMuxer {
    /// A muxer for these tracks (video streams first in the PMT, then audio).
    pub fn new(tracks: &TrackSet, config: TsMuxerConfig) -> Result<Self, TsMuxError> {
        if tracks.is_empty() {
            return Err(TsMuxError::TrackCount);
        }
        let mut streams = heapless::Vec::new();
        let mut pmt = Pmt {
            program_number: config.program_number,
            version: 0,
            pcr_pid: 0,
            streams: Vec::new(),
        };
        let mut ordered: Vec<&TrackInfo> = tracks.iter().filter(|t| t.codec.is_video()).collect();
        ordered.extend(tracks.iter().filter(|t| t.codec.is_audio()));
        let mut video_n = 0u8;
        let mut audio_n = 0u8;
        for (i, t) in ordered.into_iter().enumerate() {
            let (kind, stream_type, base_id, descriptors) = es_kind(t)?;
            let stream_id = match base_id {
                STREAM_ID_VIDEO => {
                    video_n += 1;
                    STREAM_ID_VIDEO + video_n - 1
                }
                STREAM_ID_AUDIO => {
                    audio_n += 1;
                    STREAM_ID_AUDIO + audio_n - 1
                }
                id => id,
            };
            let pid = config.first_es_pid + i as u16;
            pmt.streams.push(PmtStream {
                stream_type,
                pid,
                descriptors,
            });
            streams
                .push(Es {
                    track: t.id,
                    pid,
                    stream_id,
                    cc: 0,
                    kind,
                    pending: Vec::new(),
                })
                .map_err(|_| TsMuxError::TrackCount)?;
        }
        let pcr_pid = streams.first().map_or(0x1FFF, |s| s.pid);
        pmt.pcr_pid = pcr_pid;
        let audio_only = !tracks.has_video();
        Ok(TsMuxer {
            config,
            streams,
            pmt,
            sections: BytesMut::new(),
            pat_len: 0,
            pcr_pid,
            audio_only,
            pat_cc: 0,
            pmt_cc: 0,
            last_pcr: None,
            last_dts: None,
            last_step: 0,
            last_psi: None,
            force_psi: true,
            flush_before_psi: false,
            scratch: BytesMut::new(),
        })
    }

    /// Replaces a track's configuration (new parameter sets, a new
    /// AudioSpecificConfig). The codec must stay the same.
    pub fn update_track(&mut self, track: &TrackInfo) -> Result<(), TsMuxError> {
        let (kind, ..) = es_kind(track)?;
        let es = self
            .streams
            .iter_mut()
            .find(|s| s.track == track.id)
            .ok_or(TsMuxError::UnknownTrack(track.id))?;
        es.kind = kind;
        Ok(())
    }

    /// The PID that carries a track.
    pub fn pid_of(&self, track: TrackId) -> Option<u16> {
        self.streams
            .iter()
            .find(|s| s.track == track)
            .map(|s| s.pid)
    }

    /// Makes the next frame start with PAT and PMT (call at every segment
    /// boundary, so that each segment can be decoded on its own).
    pub fn start_segment(&mut self) {
        self.force_psi = true;
        self.flush_before_psi = true;
    }

    /// Appends the packets of one frame (and any PAT/PMT/PCR due) to `out`.
    ///
    /// Frames should come in decode order across tracks: the PCR follows
    /// their DTS. Frames out of that order are still written (the PCR then
    /// holds still rather than step back), but PCR gaps may exceed the
    /// configured interval where the order jumps.
    pub fn write_frame(
        &mut self,
        frame: &MediaFrame,
        out: &mut BytesMut,
    ) -> Result<(), TsMuxError> {
        let idx = self
            .streams
            .iter()
            .position(|s| s.track == frame.track)
            .ok_or(TsMuxError::UnknownTrack(frame.track))?;
        // Held audio goes out before the tables that start a segment and
        // before a new time base.
        if core::mem::take(&mut self.flush_before_psi) || frame.discontinuity {
            self.flush(out)?;
        }
        let group = usize::from(self.config.audio_frames_per_pes.clamp(1, 32));
        let groupable = matches!(self.streams[idx].kind, EsKind::Aac(_) | EsKind::Mp3);
        if group == 1 || !groupable {
            return self.write_unit(idx, frame, &[], out);
        }
        if let EsKind::Aac(asc) = &self.streams[idx].kind {
            // Refuse now what could not be written later.
            AdtsHeader::for_config(asc, frame.payload.len()).map_err(|source| {
                TsMuxError::Codec {
                    track: frame.track,
                    source,
                }
            })?;
        }
        self.streams[idx].pending.push(frame.clone());
        if self.streams[idx].pending.len() >= group {
            let frames = core::mem::take(&mut self.streams[idx].pending);
            self.write_unit(idx, &frames[0], &frames[1..], out)?;
        }
        Ok(())
    }

    /// Writes the audio frames held back by `audio_frames_per_pes` (call at
    /// the end of a segment and of the stream).
    pub fn flush(&mut self, out: &mut BytesMut) -> Result<(), TsMuxError> {
        for idx in 0..self.streams.len() {
            if self.streams[idx].pending.is_empty() {
                continue;
            }
            let frames = core::mem::take(&mut self.streams[idx].pending);
            // The frames' own tables and PCR follow the usual rules.
            let force = core::mem::replace(&mut self.force_psi, false);
            let r = self.write_unit(idx, &frames[0], &frames[1..], out);
            self.force_psi |= force;
            r?;
        }
        Ok(())
    }

    /// One PES packet: `frame`, followed (for grouped audio) by `more`.
    fn write_unit(
        &mut self,
        idx: usize,
        frame: &MediaFrame,
        more: &[MediaFrame],
        out: &mut BytesMut,
    ) -> Result<(), TsMuxError> {
        let dts = frame.dts.rescale(Timescale::MPEG).ticks;
        let pts = frame.pts.rescale(Timescale::MPEG).ticks;

        if frame.discontinuity && self.streams[idx].pid == self.pcr_pid {
            // A new time base: the PCR restarts from this frame (its first
            // packet carries discontinuity_indicator) and the tables repeat.
            self.last_pcr = None;
            self.last_dts = None;
            self.force_psi = true;
        }
        if self.force_psi || psi_due(self.last_psi, dts, self.config.psi_interval) {
            self.write_psi(out);
            self.force_psi = false;
            self.last_psi = Some(dts);
        }
        let pid = self.streams[idx].pid;
        let on_pcr_pid = pid == self.pcr_pid;
        // The PCR follows the decode times but never steps back, whatever
        // the interleaving of the tracks.
        let candidate = dts.saturating_sub(i64::from(self.config.pcr_delay));
        let pcr = match self.last_pcr {
            Some(last) if candidate < last && last - candidate < 90_000 => last,
            _ => candidate,
        };
        // Send a PCR now if waiting for the next frame (assumed as far
        // away as the recent frame spacing) would stretch the gap past the
        // interval.
        let step = self.last_dts.map_or(0, |l| (dts - l).clamp(0, 90_000));
        let horizon = step.max(self.last_step);
        self.last_step = step;
        self.last_dts = Some(dts);
        let due = match self.last_pcr {
            None => true,
            Some(last) => pcr - last + horizon > i64::from(self.config.pcr_interval) || pcr < last,
        };
        if !on_pcr_pid && due {
            self.write_pcr_only(pcr, out);
            self.last_pcr = Some(pcr);
        }

        // Build the PES packet in the scratch buffer.
        let mut pes = core::mem::take(&mut self.scratch);
        pes.clear();
        let es = &self.streams[idx];
        let track = frame.track;
        let codec_err = |source| TsMuxError::Codec { track, source };
        let mut random_access = false;
        let mut opus_trimmed = 0u16;
        match &es.kind {
            EsKind::Video { aud, params, h265 } => {
                let key = frame.is_key();
                random_access = key;
                let mut has_params = false;
                let mut len = aud.len();
                for nal in LengthPrefixedNals::new(frame.payload.clone()) {
                    let nal = nal.map_err(codec_err)?;
                    let (is_aud, is_param) = if *h265 {
                        let t = h265::nal_type(&nal);
                        (
                            t == h265::NAL_AUD,
                            matches!(t, h265::NAL_VPS | h265::NAL_SPS | h265::NAL_PPS),
                        )
                    } else {
                        let t = h264::nal_type(&nal);
                        (
                            t == h264::NAL_AUD,
                            matches!(t, h264::NAL_SPS | h264::NAL_PPS),
                        )
                    };
                    has_params |= is_param;
                    if !is_aud {
                        len += 4 + nal.len();
                    }
                }
                let add_params = key && !has_params;
                if add_params {
                    len += params.len();
                }
                let dts_opt = (dts != pts).then_some(dts as u64);
                pes::write_header(&mut pes, es.stream_id, pts as u64, dts_opt, len, false);
                pes.extend_from_slice(aud);
                if add_params {
                    pes.extend_from_slice(params);
                }
                for nal in LengthPrefixedNals::new(frame.payload.clone()).flatten() {
                    let t = if *h265 {
                        h265::nal_type(&nal)
                    } else {
                        h264::nal_type(&nal)
                    };
                    if (*h265 && t == h265::NAL_AUD) || (!*h265 && t == h264::NAL_AUD) {
                        continue;
                    }
                    pes.put_u32(1);
                    pes.extend_from_slice(&nal);
                }
            }
            EsKind::Aac(asc) => {
                let all = core::iter::once(frame).chain(more);
                let len: usize = all.clone().map(|f| 7 + f.payload.len()).sum();
                pes::write_header(&mut pes, es.stream_id, pts as u64, None, len, false);
                for f in all {
                    let h = AdtsHeader::for_config(asc, f.payload.len()).map_err(codec_err)?;
                    h.write(&mut pes);
                    pes.extend_from_slice(&f.payload);
                }
            }
            EsKind::Opus { trim_pending } => {
                // The decoder delay (OpusHead pre-skip) goes out as the
                // start trim of the first packets, as the Opus-in-TS
                // mapping and ffmpeg do.
                let samples =
                    crate::media::codec::opus::packet_samples(&frame.payload).unwrap_or(0);
                let trim = (*trim_pending).min(samples.min(u32::from(u16::MAX)) as u16);
                let n = frame.payload.len();
                let ctrl = 2 + n / 255 + 1 + if trim > 0 { 2 } else { 0 };
                pes::write_header(&mut pes, es.stream_id, pts as u64, None, ctrl + n, false);
                pes.put_u8(0x7F);
                pes.put_u8(if trim > 0 { 0xF0 } else { 0xE0 });
                let mut left = n;
                loop {
                    if left >= 255 {
                        pes.put_u8(255);
                        left -= 255;
                    } else {
                        pes.put_u8(left as u8);
                        break;
                    }
                }
                if trim > 0 {
                    pes.put_u16(trim);
                }
                pes.extend_from_slice(&frame.payload);
                opus_trimmed = trim;
            }
            EsKind::Mp3 => {
                let all = core::iter::once(frame).chain(more);
                let len: usize = all.clone().map(|f| f.payload.len()).sum();
                pes::write_header(&mut pes, es.stream_id, pts as u64, None, len, false);
                for f in all {
                    pes.extend_from_slice(&f.payload);
                }
            }
        }
        if self.audio_only {
            random_access = true;
        }
        let pcr_field = on_pcr_pid.then(|| pcr.rem_euclid(1 << 33) as u64 * 300);
        if on_pcr_pid {
            self.last_pcr = Some(pcr);
        }
        let es = &mut self.streams[idx];
        if let EsKind::Opus { trim_pending } = &mut es.kind {
            *trim_pending -= opus_trimmed.min(*trim_pending);
        }
        let mut cc = es.cc;
        packetize(
            out,
            pid,
            &mut cc,
            &pes,
            pcr_field,
            random_access,
            frame.discontinuity,
        );
        es.cc = cc;
        self.scratch = pes;
        Ok(())
    }

    fn write_psi(&mut self, out: &mut BytesMut) {
        // The sections do not change between repetitions: built (and their
        // CRC computed) once.
        if self.sections.is_empty() {
            psi::build_pat(
                &mut self.sections,
                self.config.transport_stream_id,
                self.config.program_number,
                self.config.pmt_pid,
            );
            self.pat_len = self.sections.len();
            psi::build_pmt(&mut self.sections, &self.pmt);
        }
        let (pat, pmt) = self.sections.split_at(self.pat_len);
        write_section_packet(out, PID_PAT, &mut self.pat_cc, pat);
        write_section_packet(out, self.config.pmt_pid, &mut self.pmt_cc, pmt);
    }

    fn write_pcr_only(&mut self, pcr: i64, out: &mut BytesMut) {
        let pid = self.pcr_pid;
        let Some(es) = self.streams.iter().find(|s| s.pid == pid) else {
            return;
        };
        out.put_u8(SYNC_BYTE);
        out.put_u16(pid);
        out.put_u8(0x20 | es.cc); // adaptation field only; CC does not advance
        out.put_u8(183);
        out.put_u8(0x10);
        put_pcr(out, pcr.rem_euclid(1 << 33) as u64 * 300);
        out.put_bytes(0xFF, 183 - 7);
    }
}

/// Whether PAT/PMT are due at decode time `now`, last sent at `last`.
fn psi_due(last: Option<i64>, now: i64, gap: u32) -> bool {
    match last {
        None => true,
        // A step back of more than a second (a new time base) also
        // refreshes; the small ones of interleaved tracks do not.
        Some(last) => now - last >= i64::from(gap) || now < last - 90_000,
    }
}

fn put_pcr(out: &mut BytesMut, pcr: u64) {
    let base = (pcr / 300) & 0x1_FFFF_FFFF;
    let ext = pcr % 300;
    out.put_u32((base >> 1) as u32);
    out.put_u8((((base & 1) as u8) << 7) | 0x7E | ((ext >> 8) as u8 & 1));
    out.put_u8(ext as u8);
}

/// Writes one section (shorter than a packet) with pointer_field 0 and
/// stuffing.
fn write_section_packet(out: &mut BytesMut, pid: u16, cc: &mut u8, sec: &[u8]) {
    // PAT and PMT built here are far below 183 bytes; longer ones are cut
    // into further packets.
    let mut first = true;
    let mut rest = sec;
    while first || !rest.is_empty() {
        out.put_u8(SYNC_BYTE);
        out.put_u16(if first { 0x4000 } else { 0 } | pid);
        out.put_u8(0x10 | *cc);
        *cc = (*cc + 1) & 0xF;
        let mut room = 184;
        if first {
            out.put_u8(0);
            room -= 1;
        }
        let n = rest.len().min(room);
        out.extend_from_slice(&rest[..n]);
        out.put_bytes(0xFF, room - n);
        rest = &rest[n..];
        first = false;
    }
}

/// Cuts a PES packet into transport packets.
pub(crate) fn packetize(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    pes: &[u8],
    pcr: Option<u64>,
    random_access: bool,
    discontinuity: bool,
) {
    out.reserve((pes.len() / 184 + 2) * PACKET_SIZE);
    let mut pos = 0;
    let mut first = true;
    while pos < pes.len() {
        let remaining = pes.len() - pos;
        let flags_needed = first && (pcr.is_some() || random_access || discontinuity);
        // Minimal adaptation field: length byte + flags byte (+ PCR).
        let af_min = if flags_needed {
            2 + if pcr.is_some() { 6 } else { 0 }
        } else {
            0
        };
        let room = 184 - af_min;
        let payload = remaining.min(room);
        let af_len = if payload < room {
            184 - payload
        } else {
            af_min
        };
        out.put_u8(SYNC_BYTE);
        out.put_u16(if first { 0x4000 } else { 0 } | (pid & 0x1FFF));
        out.put_u8(if af_len > 0 { 0x30 } else { 0x10 } | *cc);
        *cc = (*cc + 1) & 0xF;
        if af_len > 0 {
            out.put_u8((af_len - 1) as u8);
            if af_len > 1 {
                let mut flags = 0u8;
                if first && discontinuity {
                    flags |= 0x80;
                }
                if first && random_access {
                    flags |= 0x40;
                }
                let with_pcr = first && pcr.is_some();
                if with_pcr {
                    flags |= 0x10;
                }
                out.put_u8(flags);
                let mut used = 2;
                if let (true, Some(p)) = (with_pcr, pcr) {
                    put_pcr(out, p);
                    used += 6;
                }
                out.put_bytes(0xFF, af_len - used);
            }
        }
        out.extend_from_slice(&pes[pos..pos + payload]);
        pos += payload;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MediaTime;

    fn aac_track() -> TrackInfo {
        TrackInfo::new(
            TrackId(1),
            CodecId::Aac,
            Timescale::new(48_000).unwrap(),
            Bytes::from_static(&[0x11, 0x90]),
        )
    }

    #[test]
    fn audio_only_program_packets_are_well_formed() {
        let mut set = TrackSet::new();
        set.upsert(aac_track()).unwrap();
        let mut m = TsMuxer::new(&set, TsMuxerConfig::default()).unwrap();
        let mut out = BytesMut::new();
        for i in 0..10 {
            let f = MediaFrame::audio(
                TrackId(1),
                CodecId::Aac,
                MediaTime::new(i * 1024, Timescale::new(48_000).unwrap()),
                Bytes::from(alloc::vec![0x21; 300 + i as usize]),
            );
            m.write_frame(&f, &mut out).unwrap();
        }
        assert_eq!(out.len() % PACKET_SIZE, 0);
        assert!(out.chunks(PACKET_SIZE).all(|p| p[0] == SYNC_BYTE));
        // PAT first, then PMT, then audio with PCR.
        assert_eq!(out[1] & 0x1F, 0);
        assert_eq!(u16::from_be_bytes([out[189], out[190]]) & 0x1FFF, 0x1000);
        assert_eq!(u16::from_be_bytes([out[377], out[378]]) & 0x1FFF, 0x100);
        assert_eq!(out[376 + 5] & 0x50, 0x50); // random access + PCR
    }

    /// Muxes a real stream and checks the transport-level promises: PAT/PMT
    /// first and at least every 100 ms, PCR at most 40 ms apart, continuity
    /// counters without gaps, random access on the key frame.
    #[test]
    fn pcr_psi_and_continuity_on_a_real_stream() {
        use crate::media::ts::demux::tests::{demux, H264_AAC, H264_OPUS, MP3};
        for input in [H264_AAC, H264_OPUS, MP3] {
            let d = demux(input, 65536);
            let mut m = TsMuxer::new(&d.track_set(), TsMuxerConfig::default()).unwrap();
            let mut out = BytesMut::new();
            // Decode order across tracks, as a live ingest delivers frames
            // (ffmpeg's files group several audio frames per PES ahead of time).
            let mut frames = d.frames.clone();
            frames.sort_by_key(|f| f.dts);
            for f in &frames {
                m.write_frame(f, &mut out).unwrap();
            }
            let mut cc: [Option<u8>; 0x2000] = [None; 0x2000];
            let mut last_pcr: Option<u64> = None;
            let mut last_pat_pcr: Option<u64> = None;
            let mut max_pcr_gap = 0;
            let mut max_pat_gap = 0;
            let mut pcr_now = 0u64;
            let mut random_access = 0;
            assert_eq!(out[1] & 0x1F, 0, "PAT first");
            for p in out.chunks(PACKET_SIZE) {
                assert_eq!(p[0], SYNC_BYTE);
                let pid = usize::from(u16::from_be_bytes([p[1], p[2]]) & 0x1FFF);
                let afc = (p[3] >> 4) & 3;
                if afc & 2 != 0 && p[4] > 0 {
                    if p[5] & 0x40 != 0 {
                        random_access += 1;
                    }
                    if p[5] & 0x10 != 0 {
                        let base = (u64::from(p[6]) << 25)
                            | (u64::from(p[7]) << 17)
                            | (u64::from(p[8]) << 9)
                            | (u64::from(p[9]) << 1)
                            | u64::from(p[10] >> 7);
                        pcr_now = base;
                        if let Some(l) = last_pcr {
                            max_pcr_gap = max_pcr_gap.max(base - l);
                        }
                        last_pcr = Some(base);
                    }
                }
                if pid == 0 && last_pcr.is_some() {
                    if let Some(l) = last_pat_pcr {
                        max_pat_gap = max_pat_gap.max(pcr_now - l);
                    }
                    last_pat_pcr = Some(pcr_now);
                }
                if afc & 1 != 0 {
                    let c = p[3] & 0xF;
                    if let Some(prev) = cc[pid] {
                        assert_eq!(c, (prev + 1) & 0xF, "continuity on PID {pid:#x}");
                    }
                    cc[pid] = Some(c);
                }
            }
            assert!(
                max_pcr_gap <= 3600,
                "PCR gap {max_pcr_gap} in input {}",
                input.len()
            );
            assert!(max_pat_gap <= 9000 + 3600, "PAT gap {max_pat_gap}");
            assert!(random_access >= 1);
        }
    }

    /// Key frames get AUD + SPS/PPS (once, even if the frame carries them
    /// in band); delta frames get only the AUD.
    #[test]
    fn parameter_sets_before_key_frames_only() {
        use crate::media::codec::h264::AvcConfig;
        let sps = Bytes::from_static(&[
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
        ]);
        let pps = Bytes::from_static(&[0x68, 0xeb, 0xe0, 0xe4, 0xb2, 0x2c]);
        let avcc =
            AvcConfig::from_parameter_sets(alloc::vec![sps.clone()], alloc::vec![pps.clone()])
                .unwrap()
                .to_bytes();
        let mut set = TrackSet::new();
        set.upsert(TrackInfo::new(
            TrackId(0),
            CodecId::H264,
            Timescale::MPEG,
            avcc,
        ))
        .unwrap();
        let lp = |nals: &[&[u8]]| {
            let mut b = BytesMut::new();
            for n in nals {
                b.put_u32(n.len() as u32);
                b.extend_from_slice(n);
            }
            b.freeze()
        };
        let idr: &[u8] = &[0x65, 0x88, 0x80, 0x40];
        let slice: &[u8] = &[0x41, 0x9a, 0x20];
        let frames = [
            MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                true,
                MediaTime::new(0, Timescale::MPEG),
                lp(&[idr]),
            ),
            MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                false,
                MediaTime::new(3000, Timescale::MPEG),
                lp(&[slice]),
            ),
            MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                true,
                MediaTime::new(6000, Timescale::MPEG),
                lp(&[&sps, &pps, idr]),
            ),
        ];
        let count =
            |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).filter(|w| *w == needle).count();
        let mut expected_sps = 0;
        for f in &frames {
            let mut m = TsMuxer::new(&set, TsMuxerConfig::default()).unwrap();
            let mut out = BytesMut::new();
            m.write_frame(f, &mut out).unwrap();
            // Skip PAT and PMT; the PES fits in one packet after its header.
            let es = &out[2 * PACKET_SIZE..];
            assert_eq!(count(es, &[0, 0, 0, 1, 0x09, 0xF0]), 1, "one AUD");
            expected_sps = usize::from(f.is_key());
            assert_eq!(count(es, &[0, 0, 0, 1, 0x67]), expected_sps);
            assert_eq!(count(es, &[0, 0, 0, 1, 0x68]), expected_sps);
        }
        assert_eq!(expected_sps, 1);
    }

    #[test]
    fn rejects_av1() {
        let mut set = TrackSet::new();
        set.upsert(TrackInfo::new(
            TrackId(0),
            CodecId::Av1,
            Timescale::MPEG,
            Bytes::new(),
        ))
        .unwrap();
        assert_eq!(
            TsMuxer::new(&set, TsMuxerConfig::default()).err(),
            Some(TsMuxError::UnsupportedCodec(CodecId::Av1))
        );
    }
}
