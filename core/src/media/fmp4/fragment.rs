//! The fragmenter: frames in, CMAF fragments out (ISO/IEC 14496-12 §8.8:
//! `moof` with `mfhd`, one `traf` per track with `tfhd`
//! (default-base-is-moof), a version-1 `tfdt` (64-bit decode time) and a
//! `trun` with per-sample duration, size, flags and, for video, signed
//! composition offsets (version 1); then `mdat`). The first fragment of each
//! segment is preceded by `styp` (§8.16.2).
//!
//! A sample's duration is the distance to the next sample of its track, so
//! each track holds back its newest frame until the next one arrives; at the
//! end of the stream ([`Fmp4Muxer::flush`]) the last frame takes the
//! duration of the one before it.
//!
//! Cut policy: a new segment starts at a key frame of the lead track (the
//! first video track, else the first audio track) once
//! [`Fmp4Config::segment_duration_us`] has passed since the segment began;
//! with [`Fmp4Config::part_duration_us`] set, a part (a fragment that does not
//! start a segment) is cut before the lead track's queue would grow past
//! that duration, so that no part is longer than the part target.
//! Every fragment is also cut before it grows past
//! [`Fmp4Config::max_fragment_bytes`].

use super::boxes::{begin, begin_full, end};
use super::{mp4_timescale, mp4_track_id};
use crate::frame::{CodecId, MediaFrame, TrackId, TrackSet, MAX_TRACKS};
use crate::media::codec::CodecError;
use crate::time::{MediaTime, Timescale};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

/// Why a track or a frame cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fmp4Error {
    /// No tracks were given.
    #[error("no tracks")]
    NoTracks,
    /// A codec this muxer has no sample entry for.
    #[error("codec {0:?} has no sample entry here")]
    UnsupportedCodec(CodecId),
    /// A track needs a decoder configuration it does not have.
    #[error("track {0:?} has no decoder configuration")]
    MissingConfig(TrackId),
    /// A frame names a track the muxer was not given.
    #[error("unknown track {0:?}")]
    UnknownTrack(TrackId),
    /// A decode time before zero (`tfdt` is unsigned) even after the shift
    /// set by the first frame.
    #[error("track {0:?}: decode time before zero")]
    NegativeTime(TrackId),
    /// A frame is larger than [`Fmp4Config::max_fragment_bytes`].
    #[error("track {0:?}: frame larger than the fragment limit")]
    FrameTooLarge(TrackId),
    /// A configuration could not be read.
    #[error("track {track:?}: {source}")]
    Codec {
        /// The track.
        track: TrackId,
        /// What was wrong.
        source: CodecError,
    },
}

/// The most samples queued for one fragment before a cut is forced.
pub const MAX_SAMPLES_PER_FRAGMENT: usize = 1 << 16;

/// Fragmenter settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmp4Config {
    /// The shortest segment, in microseconds: a key frame after this much
    /// starts a new segment.
    pub segment_duration_us: u64,
    /// With LL-HLS: the part duration in microseconds.
    pub part_duration_us: Option<u64>,
    /// The largest fragment in bytes before a cut is forced.
    pub max_fragment_bytes: usize,
}

impl Fmp4Config {
    /// No automatic cuts: fragments are cut only by
    /// [`Fmp4Muxer::cut_fragment`] (and by the size bound).
    pub fn manual() -> Self {
        Fmp4Config {
            segment_duration_us: u64::MAX,
            ..Fmp4Config::default()
        }
    }

    /// Segments of at least `secs` seconds, no parts.
    pub fn segments_of(secs: u64) -> Self {
        Fmp4Config {
            segment_duration_us: secs * 1_000_000,
            ..Fmp4Config::default()
        }
    }
}

impl Default for Fmp4Config {
    fn default() -> Self {
        Fmp4Config {
            segment_duration_us: 2_000_000,
            part_duration_us: None,
            max_fragment_bytes: 32 << 20,
        }
    }
}

/// One `moof`+`mdat` (with `styp` first when it starts a segment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The bytes.
    pub data: Bytes,
    /// This fragment starts a segment (and begins with `styp`).
    pub starts_segment: bool,
    /// The lead track's first sample is a sync sample: decoding can start
    /// here (`INDEPENDENT=YES` for an LL-HLS part).
    pub independent: bool,
    /// `mfhd.sequence_number`.
    pub sequence: u32,
    /// The lead track's first decode time.
    pub start: MediaTime,
    /// The lead track's duration in this fragment.
    pub duration: MediaTime,
}

#[derive(Clone, Debug)]
struct Sample {
    dts: i64,
    cto: i64,
    duration: u32,
    sync: bool,
    payload: Bytes,
}

#[derive(Clone, Debug)]
struct Track {
    id: TrackId,
    mp4_id: u32,
    timescale: Timescale,
    video: bool,
    pending: Option<Sample>,
    queue: Vec<Sample>,
    last_duration: u32,
}

/// The fMP4/CMAF fragmenter. Push frames in decode order (interleaved across
/// tracks), then drain [`poll_fragment`](Fmp4Muxer::poll_fragment).
#[derive(Clone, Debug)]
pub struct Fmp4Muxer {
    config: Fmp4Config,
    tracks: heapless::Vec<Track, MAX_TRACKS>,
    lead: usize,
    sequence: u32,
    segment_start: Option<i64>,
    part_start: Option<i64>,
    next_starts_segment: bool,
    queued_bytes: usize,
    out: VecDeque<Fragment>,
    init: Bytes,
    /// Added to every time stamp (set by the first frame; non-zero only when
    /// that frame's decode time is negative).
    shift: Option<MediaTime>,
}

impl Fmp4Muxer {
    /// A fragmenter for these tracks.
    pub fn new(tracks: &TrackSet, config: Fmp4Config) -> Result<Self, Fmp4Error> {
        let init = super::init_segment(tracks)?;
        let mut ts = heapless::Vec::new();
        for t in tracks.iter() {
            let _ = ts.push(Track {
                id: t.id,
                mp4_id: mp4_track_id(t),
                timescale: mp4_timescale(t),
                video: t.codec.is_video(),
                pending: None,
                queue: Vec::new(),
                last_duration: 0,
            });
        }
        let lead = ts.iter().position(|t| t.video).unwrap_or(0);
        // trun.data_offset is an i32: keep fragments well below 2 GiB.
        let config = Fmp4Config {
            max_fragment_bytes: config.max_fragment_bytes.min(1 << 30),
            ..config
        };
        Ok(Fmp4Muxer {
            config,
            tracks: ts,
            lead,
            sequence: 1,
            segment_start: None,
            part_start: None,
            next_starts_segment: true,
            queued_bytes: 0,
            out: VecDeque::new(),
            init,
            shift: None,
        })
    }

    /// The initialization segment.
    pub fn init_segment(&self) -> Bytes {
        self.init.clone()
    }

    /// The next finished fragment.
    #[must_use]
    pub fn poll_fragment(&mut self) -> Option<Fragment> {
        self.out.pop_front()
    }

    /// Takes one frame.
    pub fn push(&mut self, frame: &MediaFrame) -> Result<(), Fmp4Error> {
        let idx = self
            .tracks
            .iter()
            .position(|t| t.id == frame.track)
            .ok_or(Fmp4Error::UnknownTrack(frame.track))?;
        let ts = self.tracks[idx].timescale;
        // tfdt is unsigned: a stream whose first decode time is negative
        // (B-frames ahead of a zero PTS) is shifted as a whole, every track
        // by the same amount.
        let shift = *self.shift.get_or_insert(if frame.dts.ticks < 0 {
            MediaTime::new(-frame.dts.ticks, frame.dts.timescale)
        } else {
            MediaTime::new(0, frame.dts.timescale)
        });
        let shift = shift.rescale(ts).ticks;
        let dts = frame.dts.rescale(ts).ticks.saturating_add(shift);
        let pts = frame.pts.rescale(ts).ticks.saturating_add(shift);
        if dts < 0 {
            return Err(Fmp4Error::NegativeTime(frame.track));
        }
        if frame.payload.len() > self.config.max_fragment_bytes {
            return Err(Fmp4Error::FrameTooLarge(frame.track));
        }
        let sync = frame.kind != crate::frame::FrameKind::Delta;
        // Complete the held-back sample.
        let t = &mut self.tracks[idx];
        if let Some(mut p) = t.pending.take() {
            let d = (dts - p.dts).clamp(0, i64::from(u32::MAX)) as u32;
            p.duration = d;
            t.last_duration = d;
            self.queued_bytes += p.payload.len();
            t.queue.push(p);
        }
        if idx == self.lead {
            let seg_due = self.segment_start.is_some_and(|s| {
                MediaTime::new(dts - s, ts).as_micros() >= self.config.segment_duration_us as i64
            });
            // A part never exceeds the part target (RFC 8216bis §4.4.3.7):
            // cut now if one more frame of the recent duration would.
            let next = i64::from(self.tracks[idx].last_duration);
            let part_due = match (self.config.part_duration_us, self.part_start) {
                (Some(part), Some(s)) => {
                    MediaTime::new(dts - s + next, ts).as_micros() > part as i64
                }
                _ => false,
            };
            if sync && seg_due {
                self.cut();
                self.next_starts_segment = true;
                self.segment_start = Some(dts);
            } else if part_due {
                self.cut();
            }
            if self.segment_start.is_none() {
                self.segment_start = Some(dts);
            }
            if self.part_start.is_none() {
                self.part_start = Some(dts);
            }
        }
        let queued_samples: usize = self.tracks.iter().map(|t| t.queue.len()).sum();
        if self.queued_bytes + frame.payload.len() > self.config.max_fragment_bytes
            || queued_samples >= MAX_SAMPLES_PER_FRAGMENT
        {
            // Bounded in bytes and in samples (tiny frames without a key
            // frame must not grow the queue without end).
            self.cut();
        }
        self.tracks[idx].pending = Some(Sample {
            dts,
            cto: pts - dts,
            duration: 0,
            sync,
            payload: frame.payload.clone(),
        });
        Ok(())
    }

    /// Ends the stream: the held-back frames take their predecessor's
    /// duration and everything queued becomes a last fragment.
    pub fn flush(&mut self) {
        for t in self.tracks.iter_mut() {
            if let Some(mut p) = t.pending.take() {
                p.duration = t.last_duration;
                self.queued_bytes += p.payload.len();
                t.queue.push(p);
            }
        }
        self.cut();
    }

    /// Cuts a fragment now from every complete sample queued (the newest
    /// frame of each track stays held until its duration is known); with
    /// `end_segment`, the next fragment starts a new segment. For callers
    /// that decide the boundaries themselves (see [`Fmp4Config::manual`]).
    pub fn cut_fragment(&mut self, end_segment: bool) {
        self.cut();
        if end_segment {
            self.next_starts_segment = true;
            self.segment_start = None;
        }
    }

    /// Ends the current segment now (at a discontinuity): everything held
    /// is cut as by [`flush`](Self::flush), and the next fragment starts a
    /// new segment with its own timing.
    pub fn start_new_segment(&mut self) {
        self.flush();
        self.next_starts_segment = true;
        self.segment_start = None;
        self.part_start = None;
    }

    /// Turns everything queued into one fragment.
    fn cut(&mut self) {
        if self.tracks.iter().all(|t| t.queue.is_empty()) {
            return;
        }
        let seq = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        let starts_segment = core::mem::take(&mut self.next_starts_segment);
        let lead = &self.tracks[self.lead];
        let independent = lead.queue.first().is_some_and(|s| s.sync);
        let start = MediaTime::new(lead.queue.first().map_or(0, |s| s.dts), lead.timescale);
        let lead_duration: i64 = lead.queue.iter().map(|s| i64::from(s.duration)).sum();
        let duration = MediaTime::new(lead_duration, lead.timescale);

        let mut out = BytesMut::with_capacity(self.queued_bytes + 1024);
        if starts_segment {
            let styp = begin(&mut out, b"styp");
            out.put_slice(b"msdh");
            out.put_u32(0);
            out.put_slice(b"msdh");
            out.put_slice(b"msix");
            out.put_slice(b"cmfs");
            end(&mut out, styp);
        }
        let moof_start = out.len();
        let moof = begin(&mut out, b"moof");
        let mfhd = begin_full(&mut out, b"mfhd", 0, 0);
        out.put_u32(seq);
        end(&mut out, mfhd);
        let mut offsets = Vec::new();
        for t in self.tracks.iter().filter(|t| !t.queue.is_empty()) {
            let traf = begin(&mut out, b"traf");
            let tfhd = begin_full(&mut out, b"tfhd", 0, 0x02_0000);
            out.put_u32(t.mp4_id);
            end(&mut out, tfhd);
            let tfdt = begin_full(&mut out, b"tfdt", 1, 0);
            out.put_u64(t.queue[0].dts as u64); // checked non-negative in push
            end(&mut out, tfdt);
            let flags =
                0x000001 | 0x000100 | 0x000200 | 0x000400 | if t.video { 0x000800 } else { 0 };
            let trun = begin_full(&mut out, b"trun", u8::from(t.video), flags);
            out.put_u32(t.queue.len() as u32);
            offsets.push(out.len());
            out.put_i32(0); // data_offset, patched below
            for s in &t.queue {
                out.put_u32(s.duration);
                out.put_u32(s.payload.len() as u32);
                out.put_u32(if s.sync { 0x0200_0000 } else { 0x0101_0000 });
                if t.video {
                    out.put_i32(s.cto.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
                }
            }
            end(&mut out, trun);
            end(&mut out, traf);
        }
        end(&mut out, moof);
        let moof_len = out.len() - moof_start;
        let mdat_len: usize = self
            .tracks
            .iter()
            .flat_map(|t| t.queue.iter())
            .map(|s| s.payload.len())
            .sum();
        let mut data_pos = moof_len + 8;
        for (t, &off) in self
            .tracks
            .iter()
            .filter(|t| !t.queue.is_empty())
            .zip(&offsets)
        {
            out[off..off + 4].copy_from_slice(&(data_pos as i32).to_be_bytes());
            data_pos += t.queue.iter().map(|s| s.payload.len()).sum::<usize>();
        }
        // At most max_fragment_bytes (<= 1 GiB) plus one frame (checked in
        // push to be no larger), so the 32-bit size form always fits.
        out.put_u32((mdat_len + 8) as u32);
        out.put_slice(b"mdat");
        for t in self.tracks.iter_mut() {
            for s in t.queue.drain(..) {
                out.extend_from_slice(&s.payload);
            }
        }
        self.queued_bytes = 0;
        self.part_start = None;
        self.out.push_back(Fragment {
            data: out.freeze(),
            starts_segment,
            independent,
            sequence: seq,
            start,
            duration,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ts::demux::tests::{demux, H264_AAC};

    #[test]
    fn segments_cut_at_key_frames_with_styp() {
        let d = demux(H264_AAC, 65536);
        let mut m = Fmp4Muxer::new(&d.track_set(), Fmp4Config::segments_of(1)).unwrap();
        for f in &d.frames {
            m.push(f).unwrap();
        }
        m.flush();
        let frags: Vec<Fragment> = core::iter::from_fn(|| m.poll_fragment()).collect();
        // GOP 60 = 2 s: one key frame, so one segment.
        assert_eq!(frags.len(), 1);
        assert!(frags[0].starts_segment && frags[0].independent);
        assert_eq!(&frags[0].data[4..8], b"styp");
        assert_eq!(frags[0].duration.ticks, 60 * 3000);
    }

    #[test]
    fn negative_first_decode_time_shifts_every_track() {
        let d = demux(H264_AAC, 65536);
        let mut m = Fmp4Muxer::new(&d.track_set(), Fmp4Config::segments_of(1)).unwrap();
        // Move the stream so that the first frame decodes at -0.1 s.
        let first = d.frames[0].dts.ticks;
        for f in &d.frames {
            let mut f = f.clone();
            f.dts = MediaTime::new(f.dts.ticks - first - 9000, f.dts.timescale);
            f.pts = MediaTime::new(f.pts.ticks - first - 9000, f.pts.timescale);
            m.push(&f).unwrap();
        }
        m.flush();
        let frag = m.poll_fragment().unwrap();
        assert_eq!(frag.start.ticks, 0);
    }

    #[test]
    fn sample_count_is_bounded() {
        let d = demux(H264_AAC, 65536);
        let mut m = Fmp4Muxer::new(&d.track_set(), Fmp4Config::manual()).unwrap();
        let audio = d
            .frames
            .iter()
            .find(|f| f.track == TrackId(1))
            .unwrap()
            .clone();
        let mut fragments = 0;
        for i in 0..(MAX_SAMPLES_PER_FRAGMENT as i64 + 10) {
            let mut f = audio.clone();
            f.payload = Bytes::from_static(&[0x21]);
            f.dts = MediaTime::new(i * 1920, Timescale::MPEG);
            f.pts = f.dts;
            m.push(&f).unwrap();
            while m.poll_fragment().is_some() {
                fragments += 1;
            }
        }
        assert_eq!(fragments, 1);
    }

    #[test]
    fn fragments_when_asked() {
        let d = demux(H264_AAC, 65536);
        let mut m = Fmp4Muxer::new(&d.track_set(), Fmp4Config::manual()).unwrap();
        let mut frags = Vec::new();
        for (i, f) in d.frames.iter().enumerate() {
            m.push(f).unwrap();
            if i % 50 == 49 {
                m.cut_fragment(i == 99);
            }
            frags.extend(core::iter::from_fn(|| m.poll_fragment()));
        }
        m.flush();
        frags.extend(core::iter::from_fn(|| m.poll_fragment()));
        assert_eq!(frags.len(), 4);
        let starts: Vec<bool> = frags.iter().map(|f| f.starts_segment).collect();
        assert_eq!(starts, [true, false, true, false]);
        assert_eq!(frags.iter().map(|f| f.duration.ticks).sum::<i64>(), 180_000);
    }

    #[test]
    fn parts_for_ll_hls() {
        let d = demux(H264_AAC, 65536);
        let cfg = Fmp4Config {
            part_duration_us: Some(500_000),
            ..Fmp4Config::segments_of(1)
        };
        let mut m = Fmp4Muxer::new(&d.track_set(), cfg).unwrap();
        for f in &d.frames {
            m.push(f).unwrap();
        }
        m.flush();
        let frags: Vec<Fragment> = core::iter::from_fn(|| m.poll_fragment()).collect();
        assert_eq!(frags.len(), 4);
        assert!(frags[0].starts_segment && frags[0].independent);
        assert!(frags[1..]
            .iter()
            .all(|f| !f.starts_segment && !f.independent));
        assert_eq!(frags.iter().map(|f| f.duration.ticks).sum::<i64>(), 180_000);
        assert_eq!(
            frags.iter().map(|f| f.sequence).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::frame::{TrackInfo, TrackSet};
    use alloc::vec;
    use proptest::prelude::*;

    /// `(fourcc, body)` of the boxes in `d`.
    fn boxes(d: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 8 <= d.len() {
            let size = u32::from_be_bytes([d[pos], d[pos + 1], d[pos + 2], d[pos + 3]]) as usize;
            assert!(size >= 8 && pos + size <= d.len(), "box size");
            let mut fourcc = [0; 4];
            fourcc.copy_from_slice(&d[pos + 4..pos + 8]);
            out.push((fourcc, &d[pos + 8..pos + size]));
            pos += size;
        }
        assert_eq!(pos, d.len());
        out
    }

    fn u32_at(d: &[u8], i: usize) -> u32 {
        u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
    }

    /// Reads every sample back: (track_ID, dts, duration, cto, sync, payload).
    fn samples(frag: &[u8]) -> Vec<(u32, u64, u32, i32, bool, Vec<u8>)> {
        let mut out = Vec::new();
        let top = boxes(frag);
        let moof_pos = if &top[0].0 == b"styp" {
            top[0].1.len() + 8
        } else {
            0
        };
        let (_, moof) = top.iter().find(|(f, _)| f == b"moof").copied().unwrap();
        for (f, traf) in boxes(moof) {
            if &f != b"traf" {
                continue;
            }
            let parts = boxes(traf);
            let tfhd = parts.iter().find(|(f, _)| f == b"tfhd").unwrap().1;
            let id = u32_at(tfhd, 4);
            let tfdt = parts.iter().find(|(f, _)| f == b"tfdt").unwrap().1;
            assert_eq!(tfdt[0], 1, "tfdt version 1");
            let mut dts = (u64::from(u32_at(tfdt, 4)) << 32) | u64::from(u32_at(tfdt, 8));
            let trun = parts.iter().find(|(f, _)| f == b"trun").unwrap().1;
            let flags = u32_at(trun, 0) & 0xFF_FFFF;
            let count = u32_at(trun, 4) as usize;
            let mut data = moof_pos + u32_at(trun, 8) as usize;
            let mut p = 12;
            for _ in 0..count {
                let dur = u32_at(trun, p);
                let size = u32_at(trun, p + 4) as usize;
                let sflags = u32_at(trun, p + 8);
                p += 12;
                let cto = if flags & 0x800 != 0 {
                    p += 4;
                    u32_at(trun, p - 4) as i32
                } else {
                    0
                };
                out.push((
                    id,
                    dts,
                    dur,
                    cto,
                    sflags == 0x0200_0000,
                    frag[data..data + size].to_vec(),
                ));
                data += size;
                dts += u64::from(dur);
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every frame pushed comes back from the fragments with its decode
        /// time, duration (distance to the next frame), composition offset,
        /// sync flag and bytes; segments start on key frames.
        #[test]
        fn fragments_hold_every_frame(
            steps in proptest::collection::vec((any::<bool>(), 1i64..5000, 0i64..9000, any::<bool>(), 1usize..500), 2..120),
            part in proptest::option::of(50_000u64..400_000),
        ) {
            let mut set = TrackSet::new();
            let sps = Bytes::from_static(&[
                0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
                0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
            ]);
            let pps = Bytes::from_static(&[0x68, 0xeb, 0xe0, 0xe4, 0xb2, 0x2c]);
            let avcc = crate::media::codec::h264::AvcConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap().to_bytes();
            set.upsert(TrackInfo::new(TrackId(0), CodecId::H264, Timescale::MPEG, avcc)).unwrap();
            set.upsert(TrackInfo::new(TrackId(1), CodecId::Aac, Timescale::MPEG, Bytes::from_static(&[0x11, 0x90]))).unwrap();
            let cfg = Fmp4Config { part_duration_us: part, ..Fmp4Config::segments_of(1) };
            let mut m = Fmp4Muxer::new(&set, cfg).unwrap();
            let (mut vt, mut at) = (0i64, 0i64);
            let mut sent: Vec<MediaFrame> = Vec::new();
            for (i, &(video, step, cto, key, len)) in steps.iter().enumerate() {
                let payload = Bytes::from(vec![i as u8; len]);
                let f = if video || i == 0 {
                    vt += step;
                    let mut f = MediaFrame::video(TrackId(0), CodecId::H264, key || i == 0, MediaTime::new(vt, Timescale::MPEG), payload);
                    f.pts = MediaTime::new(vt + cto, Timescale::MPEG);
                    f
                } else {
                    at += step;
                    MediaFrame::audio(TrackId(1), CodecId::Aac, MediaTime::new(at, Timescale::MPEG), payload)
                };
                m.push(&f).unwrap();
                sent.push(f);
            }
            m.flush();
            let mut got: Vec<(u32, u64, u32, i32, bool, Vec<u8>)> = Vec::new();
            let mut first = true;
            while let Some(frag) = m.poll_fragment() {
                prop_assert_eq!(frag.starts_segment, first || &frag.data[4..8] == b"styp");
                if frag.starts_segment {
                    prop_assert!(frag.independent);
                }
                first = false;
                got.extend(samples(&frag.data));
            }
            for track in 0..2u8 {
                let s: Vec<&MediaFrame> = sent.iter().filter(|f| f.track == TrackId(track)).collect();
                let mut g: Vec<_> = got.iter().filter(|x| x.0 == u32::from(track) + 1).collect();
                g.sort_by_key(|x| x.1);
                prop_assert_eq!(s.len(), g.len());
                // AAC is rescaled to its 48 kHz sample rate.
                let ts = if track == 0 { Timescale::MPEG } else { Timescale::new(48_000).unwrap() };
                for (k, (f, x)) in s.iter().zip(&g).enumerate() {
                    prop_assert_eq!(x.1 as i64, f.dts.rescale(ts).ticks);
                    if let Some(next) = s.get(k + 1) {
                        prop_assert_eq!(i64::from(x.2), next.dts.rescale(ts).ticks - f.dts.rescale(ts).ticks);
                    }
                    prop_assert_eq!(i64::from(x.3), f.pts.rescale(ts).ticks - f.dts.rescale(ts).ticks);
                    prop_assert_eq!(x.4, f.kind != crate::frame::FrameKind::Delta);
                    prop_assert_eq!(&x.5[..], &f.payload[..]);
                }
            }
        }
    }
}
