//! Publisher handover: a publisher that comes back on the same key within the
//! engine's linger time continues the stream its predecessor left, on the
//! same bus, so the players already attached keep playing.
//!
//! Two things make the join invisible to a decoder:
//!
//! * **Time keeps increasing.** A [`Timeline`] follows what a publish session
//!   sent (per track: the latest time stamp and the usual step between
//!   frames). The returning publisher's media times, which usually start
//!   again near 0, are moved by one offset, the same for every track so its
//!   audio and video stay in sync, so that its first frame comes one frame
//!   step after the latest time stamp of the session that left. A frame of
//!   the new session that would still land at or before that point (a track
//!   whose clock starts a little earlier than the first frame's) is held at
//!   the point, so no track ever goes backwards.
//! * **A clean start.** Frames of the new session before its first sync
//!   point (a video key frame, or any audio frame when it has no video) are
//!   not published: players resume at a key frame, after the new track
//!   configuration. The first frame of each track carries `discontinuity`,
//!   so packagers cut a segment and mark the join (`EXT-X-DISCONTINUITY`).

use crate::frame::{FrameKind, MediaFrame, TrackId, MAX_TRACKS};
use crate::time::{rescale, MediaTime, Timescale};

/// The step assumed for a track that sent a single frame: one frame at 30 fps.
const DEFAULT_STEP_US: i64 = 33_333;
/// Bounds on the step between two frames of a track: at least 1 ms (so the
/// next frame is later even on the millisecond RTMP clock), at most 1 s.
const MIN_STEP_US: i64 = 1_000;
const MAX_STEP_US: i64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
struct TrackClock {
    id: TrackId,
    last_dts_us: i64,
    latest_us: i64,
    step_us: i64,
}

/// What one publish session has sent, as far as continuing after it goes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeline {
    /// The end of the session before this one (a session that publishes
    /// nothing hands this on unchanged).
    floor_us: Option<i64>,
    tracks: heapless::Vec<TrackClock, MAX_TRACKS>,
}

impl Timeline {
    /// A time line that continues after `end_us`.
    pub(crate) fn after(end_us: Option<i64>) -> Self {
        Timeline {
            floor_us: end_us,
            tracks: heapless::Vec::new(),
        }
    }

    /// Notes a published frame.
    pub(crate) fn record(&mut self, f: &MediaFrame) {
        let dts = f.dts.as_micros();
        let latest = dts.max(f.pts.as_micros());
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == f.track) {
            let d = dts.saturating_sub(t.last_dts_us);
            if d > 0 {
                t.step_us = d.clamp(MIN_STEP_US, MAX_STEP_US);
            }
            t.last_dts_us = dts;
            t.latest_us = t.latest_us.max(latest);
            return;
        }
        // A ninth track is not followed; the others bound the end well
        // enough, and the publisher side stays allocation-free.
        let _ = self.tracks.push(TrackClock {
            id: f.track,
            last_dts_us: dts,
            latest_us: latest,
            step_us: DEFAULT_STEP_US,
        });
    }

    /// Where a session continuing after this one starts, in microseconds of
    /// media time: one frame step after the latest time stamp sent.
    pub(crate) fn end_us(&self) -> Option<i64> {
        let own = self
            .tracks
            .iter()
            .map(|t| t.latest_us.saturating_add(t.step_us))
            .max();
        match (own, self.floor_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The rewriting a returning publisher's frames go through.
#[derive(Debug)]
pub(crate) struct Resume {
    /// Where the previous session ended; `None` when it sent nothing.
    end_us: Option<i64>,
    /// Added to every time stamp (µs), fixed by the first frame published.
    offset_us: Option<i64>,
    /// Tracks whose first frame has been marked `discontinuity`.
    marked: heapless::Vec<TrackId, MAX_TRACKS>,
}

impl Resume {
    /// Continues after a session that ended at `end_us`.
    pub(crate) fn after(end_us: Option<i64>) -> Self {
        Resume {
            end_us,
            offset_us: None,
            marked: heapless::Vec::new(),
        }
    }

    /// The frame as players get it, or `None` to drop it (it comes before
    /// the new session's first sync point). `has_video`: whether the track
    /// configuration in force has video.
    pub(crate) fn apply(&mut self, mut f: MediaFrame, has_video: bool) -> Option<MediaFrame> {
        let offset = match self.offset_us {
            Some(o) => o,
            None => {
                let sync = match f.kind {
                    FrameKind::Key => true,
                    FrameKind::Audio => !has_video,
                    FrameKind::Delta => false,
                };
                if !sync {
                    return None;
                }
                let o = self
                    .end_us
                    .map_or(0, |end| end.saturating_sub(f.dts.as_micros()));
                self.offset_us = Some(o);
                o
            }
        };
        let scale = f.dts.timescale;
        let shift = rescale(offset, Timescale::MICROS, scale);
        let mut dts = f.dts.ticks.saturating_add(shift);
        if let Some(end) = self.end_us {
            // Never at or before the previous session's end.
            dts = dts.max(rescale(end, Timescale::MICROS, scale));
        }
        let pts_scale = f.pts.timescale;
        let pts_shift = rescale(offset, Timescale::MICROS, pts_scale);
        let pts = MediaTime::new(f.pts.ticks.saturating_add(pts_shift), pts_scale);
        let dts = MediaTime::new(dts, scale);
        f.pts = pts.max(dts);
        f.dts = dts;
        if !self.marked.contains(&f.track) && self.marked.push(f.track).is_ok() {
            f.discontinuity = true;
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::CodecId;
    use bytes::Bytes;

    fn video(key: bool, ms: i64) -> MediaFrame {
        MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            key,
            MediaTime::from_millis(ms),
            Bytes::new(),
        )
    }

    fn audio(ticks: i64) -> MediaFrame {
        let ts = Timescale::new(48_000).unwrap_or(Timescale::MILLIS);
        MediaFrame::audio(
            TrackId(1),
            CodecId::Aac,
            MediaTime::new(ticks, ts),
            Bytes::new(),
        )
    }

    #[test]
    fn the_end_is_one_step_after_the_latest_time_stamp() {
        let mut t = Timeline::default();
        assert_eq!(t.end_us(), None);
        for ms in [0, 40, 80] {
            t.record(&video(ms == 0, ms));
        }
        // A B-frame style composition offset: the latest pts counts.
        let mut f = video(false, 120);
        f.pts = MediaTime::from_millis(200);
        t.record(&f);
        assert_eq!(t.end_us(), Some(240_000));
        assert_eq!(Timeline::after(Some(1_000_000)).end_us(), Some(1_000_000));
    }

    #[test]
    fn a_returning_session_starts_at_a_sync_point_after_the_end() {
        let mut r = Resume::after(Some(5_040_000));
        // Before the first key frame: dropped.
        assert!(r.apply(video(false, 0), true).is_none());
        assert!(r.apply(audio(0), true).is_none());
        let k = r.apply(video(true, 20), true).unwrap();
        assert_eq!(k.dts, MediaTime::from_millis(5040));
        assert!(k.discontinuity);
        // The audio clock started a little before the key frame: held at
        // the end, never before it.
        let a = r.apply(audio(480), true).unwrap();
        assert_eq!(a.dts.as_micros(), 5_040_000);
        assert!(a.discontinuity);
        let a = r.apply(audio(48_000), true).unwrap();
        assert_eq!(a.dts.as_micros(), 5_040_000 + 980_000);
        assert!(!a.discontinuity);
        let d = r.apply(video(false, 60), true).unwrap();
        assert_eq!(d.dts, MediaTime::from_millis(5080));
        assert!(!d.discontinuity);
    }

    #[test]
    fn audio_is_a_sync_point_without_video_and_nothing_to_follow_means_no_shift() {
        let mut r = Resume::after(None);
        let a = r.apply(audio(960), false).unwrap();
        assert_eq!(a.dts.ticks, 960);
        assert!(a.discontinuity);
    }
}
