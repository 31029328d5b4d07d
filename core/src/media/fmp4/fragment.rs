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
//! start a segment) is cut whenever the lead track has that much queued.
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
    /// A decode time before zero (`tfdt` is unsigned).
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
        let dts = frame.dts.rescale(ts).ticks;
        let pts = frame.pts.rescale(ts).ticks;
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
            let part_due = match (self.config.part_duration_us, self.part_start) {
                (Some(part), Some(s)) => MediaTime::new(dts - s, ts).as_micros() >= part as i64,
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
        if self.queued_bytes + frame.payload.len() > self.config.max_fragment_bytes {
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
