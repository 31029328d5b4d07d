//! Where a transcoder plugs in: a player whose protocol cannot carry the
//! stream's audio codec (WebRTC takes Opus, an RTMP camera sends AAC) gets
//! the audio through an [`AudioTranscoder`] when its host has one; a stream
//! with an adaptive-bitrate ladder is fed to a [`Transcoder`], whose
//! renditions are published as streams of their own.
//!
//! The kernel has no codec of its own: an implementation (a library, or a
//! process fed through pipes) lives with the host and is handed to the
//! protocol as a [`TranscoderFactory`]. The contract is sans-IO like the
//! rest: frames in, frames out when ready; a transcoder that works on
//! another thread hands out what it finished at the next call.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use crate::media::ts::demux::{TsDemuxer, TsDemuxerConfig, TsEvent};

/// Turns one audio track's frames into another codec's.
pub trait AudioTranscoder: Send {
    /// Starts on `input`: the output track (codec, timescale and
    /// configuration, e.g. an `OpusHead`), or why it cannot take it.
    fn start(&mut self, input: &TrackInfo) -> Result<TrackInfo, TranscodeError>;

    /// One frame of the input track, in order.
    fn push(&mut self, frame: &MediaFrame) -> Result<(), TranscodeError>;

    /// The next output frame, when one is ready; times are on the output
    /// track's timescale, from the same origin as the input's.
    fn poll(&mut self) -> Option<MediaFrame>;
}

/// A hardware encoder and decoder family (NVENC, Quick Sync, VAAPI, AMF,
/// ...) a host found, so a transcoder can pick one. The host registers
/// what it detected; the kernel runs no codec itself.
pub trait HwAccelBackend: Send + Sync {
    /// The backend's name (`"nvenc"`, `"qsv"`, ...).
    fn id(&self) -> &'static str;

    /// Whether it works on this machine (a test encode succeeded, not only
    /// a name in a list).
    fn is_available(&self) -> bool;

    /// The codecs it encodes.
    fn supported_encoders(&self) -> &[CodecId];

    /// The codecs it decodes.
    fn supported_decoders(&self) -> &[CodecId];
}

/// Why a transcoder could not start or go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transcoding failed: {0}")]
pub struct TranscodeError(pub String);

/// Makes a transcoder from one codec to another for each player that
/// needs one; `None` when it has none for the pair.
#[derive(Clone)]
pub struct TranscoderFactory(
    #[allow(clippy::type_complexity)]
    pub  Arc<dyn Fn(CodecId, CodecId) -> Option<Box<dyn AudioTranscoder>> + Send + Sync>,
);

impl TranscoderFactory {
    /// A transcoder from `from` to `to`, if the host has one.
    pub fn make(&self, from: CodecId, to: CodecId) -> Option<Box<dyn AudioTranscoder>> {
        (self.0)(from, to)
    }
}

impl core::fmt::Debug for TranscoderFactory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TranscoderFactory")
    }
}

/// What a [`Transcoder`] did with a frame it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Queued for the transcoder.
    Queued,
    /// Dropped: the queue was full, or a key frame is awaited after it was
    /// (see [`KeyFrameGate`]). The publisher is never held back.
    Dropped,
}

/// What a [`Transcoder`] gives out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TranscodeEvent {
    /// A rendition's tracks: first, and again when they change (after a
    /// restart, say). Frames of the rendition follow.
    Tracks {
        /// The rendition, an index into the transcoder's list.
        rendition: usize,
        /// Its tracks.
        tracks: Box<TrackSet>,
    },
    /// A frame of a rendition, on its tracks' ids and timescales, times
    /// from the same origin as the input's.
    Frame {
        /// The rendition.
        rendition: usize,
        /// The frame.
        frame: MediaFrame,
    },
    /// The transcoder stopped (its process died, say) and will start
    /// again: each rendition ends here, and what follows comes after a gap.
    Stopped {
        /// Why, for the log.
        why: alloc::string::String,
    },
}

/// Turns one stream (all its tracks) into one or more renditions, each a
/// stream of its own with its own tracks: an adaptive-bitrate ladder, say.
///
/// Sans-IO like the rest: the input goes in by [`push`](Self::push), in
/// order, and never waits (a transcoder that cannot keep up drops, at a key
/// frame's boundary, and says so); what is ready comes out by
/// [`poll_event`](Self::poll_event). A transcoder that works on another
/// thread or in another process hands out what it finished at the next
/// call.
pub trait Transcoder: Send {
    /// The names of its renditions (`"720p"`, ...), in the order events
    /// number them.
    fn renditions(&self) -> Vec<alloc::string::String>;

    /// The input's tracks: first, and again when they change.
    fn set_tracks(&mut self, tracks: &TrackSet) -> Result<(), TranscodeError>;

    /// One input frame.
    fn push(&mut self, frame: &MediaFrame) -> Result<Fed, TranscodeError>;

    /// The next output event, when one is ready.
    fn poll_event(&mut self) -> Option<TranscodeEvent>;

    /// Whether it wants a key frame from the publisher (it started, or
    /// started again, and takes frames from the next key frame on).
    fn wants_key_frame(&mut self) -> bool {
        false
    }
}

/// Which input frames a bounded transcoder queue takes: every frame while
/// there is room; once a frame finds none, nothing until a video key frame
/// finds room again (a decoder cannot start mid-GOP, so a frame taken after
/// a gap is a key frame). A fresh gate waits for a key frame too. Streams
/// without video pass or drop frame by frame.
#[derive(Clone, Debug)]
pub struct KeyFrameGate {
    has_video: bool,
    waiting: Option<Wait>,
    dropped: u64,
}

/// Why a [`KeyFrameGate`] waits for a key frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// The transcoder starts (or starts again) at a key frame.
    Start,
    /// A frame found no room: the rest of its GOP is dropped.
    Overflow,
}

impl KeyFrameGate {
    /// A gate for a stream with video or without (`has_video`), waiting
    /// for its first key frame.
    pub fn new(has_video: bool) -> Self {
        KeyFrameGate {
            has_video,
            waiting: has_video.then_some(Wait::Start),
            dropped: 0,
        }
    }

    /// Waits for a key frame again (the transcoder behind it restarted).
    pub fn restart(&mut self) {
        self.waiting = self.has_video.then_some(Wait::Start);
    }

    /// Whether `frame` goes in, given whether the queue has `room`.
    pub fn admit(&mut self, frame: &MediaFrame, room: bool) -> bool {
        if !room {
            self.dropped += 1;
            self.waiting = self.has_video.then_some(Wait::Overflow);
            return false;
        }
        match self.waiting {
            Some(_) if frame.is_key() => {
                self.waiting = None;
                true
            }
            Some(wait) => {
                if wait == Wait::Overflow {
                    self.dropped += 1;
                }
                false
            }
            None => true,
        }
    }

    /// Frames dropped for want of room, with the rest of their GOPs (not
    /// those before the first key frame a start waits for).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A transcoder's figures, for a stream's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TranscodeReport {
    /// The stream it reads (`APP/STREAM`).
    pub resource: alloc::string::String,
    /// The streams it publishes (`APP/STREAM_720p`, ...).
    pub renditions: Vec<alloc::string::String>,
    /// What it runs, as a command line.
    pub command: alloc::string::String,
    /// The running process's id, if one runs.
    pub pid: Option<u32>,
    /// Media time out per wall-clock time, since the process started
    /// (1.0: real time).
    pub speed: f64,
    /// Frames taken in.
    pub frames_in: u64,
    /// Frames given out, all renditions together.
    pub frames_out: u64,
    /// Frames dropped before the transcoder (see [`KeyFrameGate`]).
    pub dropped: u64,
    /// Times it was started again after its process died.
    pub restarts: u64,
}

/// Where the statistics read the running transcoders' figures.
pub trait TranscodeSource: Send + Sync {
    /// Every running transcoder's figures.
    fn transcodes(&self) -> Vec<TranscodeReport>;
}

/// Reads a ladder's renditions out of one MPEG-TS that carries them all
/// (what an ffmpeg with one video output per rung writes: one video stream
/// per rung, in the rungs' order, and the audio), sans-IO: bytes in,
/// [`TranscodeEvent`]s out. Each rung starts at its first key frame once
/// its tracks are known, announced as its own track set (its video as
/// track 0, the audio as track 1); the audio goes to every rung started.
#[derive(Debug)]
pub struct RenditionSplitter {
    demux: TsDemuxer,
    /// Whether the renditions carry audio (a rung waits for it).
    with_audio: bool,
    /// Each rung's video track, and whether its tracks were announced.
    video: Vec<Option<TrackInfo>>,
    announced: Vec<bool>,
    audio: Option<TrackInfo>,
    ready: VecDeque<TranscodeEvent>,
}

impl RenditionSplitter {
    /// A splitter for `rungs` renditions, with audio or without.
    pub fn new(rungs: usize, with_audio: bool) -> Self {
        RenditionSplitter {
            demux: TsDemuxer::new(TsDemuxerConfig::default()),
            with_audio,
            video: alloc::vec![None; rungs],
            announced: alloc::vec![false; rungs],
            audio: None,
            ready: VecDeque::new(),
        }
    }

    /// The rung of a video track. The demuxer numbers tracks in the order
    /// of the program map, which is the order of the outputs (the rungs'):
    /// the first video track 0, the audio 1, the other videos 2, 3, ...
    fn rung_of(&self, track: TrackId) -> Option<usize> {
        let i = match track.0 {
            0 => 0,
            1 => return None,
            n => usize::from(n) - 1,
        };
        (i < self.video.len()).then_some(i)
    }

    /// A rung's tracks: its video as track 0 and the audio as track 1.
    fn tracks(&self, i: usize) -> Option<TrackSet> {
        let mut set = TrackSet::new();
        let mut v = self.video.get(i)?.clone()?;
        v.id = TrackId(0);
        set.upsert(v).ok()?;
        if self.with_audio {
            let mut a = self.audio.clone()?;
            a.id = TrackId(1);
            set.upsert(a).ok()?;
        }
        Some(set)
    }

    /// Bytes of the stream, in order.
    pub fn push(&mut self, data: &[u8]) {
        self.demux.push(data);
        while let Some(ev) = self.demux.poll_event() {
            match ev {
                TsEvent::Track(t) if t.codec.is_video() => {
                    if let Some(i) = self.rung_of(t.id) {
                        self.video[i] = Some(t);
                        self.announced[i] = false;
                    }
                }
                TsEvent::Track(t) => {
                    self.audio = Some(t);
                    self.announced.iter_mut().for_each(|a| *a = false);
                }
                TsEvent::Frame(mut f) if f.codec.is_video() => {
                    let Some(i) = self.rung_of(f.track) else {
                        continue;
                    };
                    if !self.announced[i] {
                        // A rung starts once its tracks are known, at a
                        // key frame.
                        let Some(tracks) = self.tracks(i).filter(|_| f.is_key()) else {
                            continue;
                        };
                        self.announced[i] = true;
                        self.ready.push_back(TranscodeEvent::Tracks {
                            rendition: i,
                            tracks: Box::new(tracks),
                        });
                    }
                    f.track = TrackId(0);
                    self.ready.push_back(TranscodeEvent::Frame {
                        rendition: i,
                        frame: f,
                    });
                }
                TsEvent::Frame(mut f) => {
                    if self.audio.as_ref().is_none_or(|a| a.id != f.track) {
                        continue;
                    }
                    f.track = TrackId(1);
                    for (i, _) in self.announced.iter().enumerate().filter(|(_, a)| **a) {
                        self.ready.push_back(TranscodeEvent::Frame {
                            rendition: i,
                            frame: f.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// The next event; after each [`push`](Self::push), take them all (they
    /// are what that push's bytes held, so they stay bounded by it).
    pub fn poll_event(&mut self) -> Option<TranscodeEvent> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ts::mux::{TsMuxer, TsMuxerConfig};
    use crate::time::{MediaTime, Timescale};
    use bytes::Bytes;

    fn frame(key: bool) -> MediaFrame {
        let t = MediaTime::new(0, Timescale::new(1000).unwrap());
        MediaFrame::video(TrackId(0), CodecId::H264, key, t, Bytes::new())
    }

    #[test]
    fn a_gate_waits_for_a_key_frame_first_and_after_each_drop() {
        let mut g = KeyFrameGate::new(true);
        assert!(
            !g.admit(&frame(false), true),
            "a fresh gate waits for a key"
        );
        assert!(g.admit(&frame(true), true));
        assert!(g.admit(&frame(false), true));
        assert!(!g.admit(&frame(false), false), "no room: dropped");
        assert!(!g.admit(&frame(false), true), "room again, but mid-GOP");
        assert!(!g.admit(&frame(true), false), "a key frame with no room");
        assert!(g.admit(&frame(true), true), "a key frame with room");
        assert!(g.admit(&frame(false), true));
        assert_eq!(
            g.dropped(),
            3,
            "the wait for the first key frame is not a drop"
        );
        g.restart();
        assert!(!g.admit(&frame(false), true), "a restart waits for a key");
        assert_eq!(g.dropped(), 3);
        assert!(g.admit(&frame(true), true));
    }

    #[test]
    fn without_video_frames_pass_or_drop_one_by_one() {
        let t = MediaTime::new(0, Timescale::new(1000).unwrap());
        let a = MediaFrame::audio(TrackId(1), CodecId::Aac, t, Bytes::new());
        let mut g = KeyFrameGate::new(false);
        assert!(g.admit(&a, true));
        assert!(!g.admit(&a, false));
        assert!(g.admit(&a, true));
        assert_eq!(g.dropped(), 1);
    }

    /// The tracks and frames of a capture.
    fn capture(data: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
        TsDemuxer::read_all(data)
    }

    #[test]
    fn a_splitter_gives_each_rung_its_own_tracks_from_its_first_key_frame() {
        // A stream as a ladder's ffmpeg writes it: three video streams
        // (here one capture's video three times, the program map in the
        // rungs' order) and the audio.
        let (src, frames) = capture(include_bytes!("../testdata/h264_opus.ts"));
        let (v, a) = (src.video().unwrap().clone(), src.audio().unwrap().clone());
        let mut set = TrackSet::new();
        for (id, base) in [(0, &v), (1, &a), (2, &v), (3, &v)] {
            let mut t = base.clone();
            t.id = TrackId(id);
            set.upsert(t).unwrap();
        }
        let mut mux = TsMuxer::new(&set, TsMuxerConfig::default()).unwrap();
        let mut ts = bytes::BytesMut::new();
        let (mut videos, mut audios) = (0, 0);
        for f in &frames {
            if f.codec.is_video() {
                videos += 1;
                for id in [0, 2, 3] {
                    let mut g = f.clone();
                    g.track = TrackId(id);
                    mux.write_frame(&g, &mut ts).unwrap();
                }
            } else {
                audios += 1;
                let mut g = f.clone();
                g.track = TrackId(1);
                mux.write_frame(&g, &mut ts).unwrap();
            }
        }
        let mut split = RenditionSplitter::new(3, true);
        let mut got: Vec<TranscodeEvent> = Vec::new();
        // In pieces, as a pipe gives them.
        for piece in ts.chunks(1000) {
            split.push(piece);
            while let Some(e) = split.poll_event() {
                got.push(e);
            }
        }
        for rung in 0..3 {
            let mine: Vec<&TranscodeEvent> = got
                .iter()
                .filter(|e| match e {
                    TranscodeEvent::Tracks { rendition, .. }
                    | TranscodeEvent::Frame { rendition, .. } => *rendition == rung,
                    TranscodeEvent::Stopped { .. } => false,
                })
                .collect();
            let TranscodeEvent::Tracks { tracks, .. } = mine[0] else {
                panic!("rung {rung} starts with its tracks: {:?}", mine[0]);
            };
            let ids: Vec<(u8, CodecId)> = tracks.iter().map(|t| (t.id.0, t.codec)).collect();
            assert_eq!(ids, [(0, CodecId::H264), (1, CodecId::Opus)]);
            let TranscodeEvent::Frame { frame, .. } = mine[1] else {
                panic!("then frames");
            };
            assert!(frame.is_key() && frame.track == TrackId(0));
            let count = |video: bool| {
                mine.iter()
                    .filter(|e| matches!(e, TranscodeEvent::Frame { frame, .. } if frame.codec.is_video() == video))
                    .count()
            };
            // A rung waits for the audio's track too, which the demuxer
            // knows after its first whole PES: here the rungs start at the
            // capture's second key frame (frame 30 of 60), and run to its
            // end (the last frame may wait in the demuxer for a next packet).
            assert!(
                (videos - 31..=videos - 30).contains(&count(true)),
                "rung {rung}: {} of {videos}",
                count(true)
            );
            assert!(count(false) > 0 && count(false) <= audios);
            assert!(mine.iter().all(|e| match e {
                TranscodeEvent::Frame { frame, .. } =>
                    frame.track == TrackId(u8::from(!frame.codec.is_video())),
                _ => true,
            }));
        }
        assert!(split.poll_event().is_none());
        // Without audio a rung starts on its video alone; a fourth video
        // stream beyond the rungs is ignored.
        let mut two = RenditionSplitter::new(2, false);
        two.push(&ts);
        let mut rungs_seen = alloc::collections::BTreeSet::new();
        while let Some(e) = two.poll_event() {
            if let TranscodeEvent::Tracks { rendition, tracks } = e {
                assert_eq!(tracks.iter().count(), 1);
                rungs_seen.insert(rendition);
            }
        }
        assert_eq!(rungs_seen.into_iter().collect::<Vec<_>>(), [0, 1]);
    }
}
