//! The HLS segmenter: frames in; init segment, parts, segments and playlist
//! updates out (RFC 8216bis §3 segment formats, §4.4.3.1 target duration,
//! §6.2.1 live playlists; LL-HLS parts §4.4.4.9).
//!
//! Segments are cut at key frames of the lead track (the first video track;
//! for audio-only streams any frame) once the target duration has passed,
//! and at a timestamp discontinuity (which the playlist marks). MPEG-TS
//! segments start with PAT/PMT; fMP4 segments start with `styp` and share
//! one init segment. With a part duration every fMP4 fragment, or every run
//! of whole TS frames up to the part target, is also published as an LL-HLS
//! part as soon as it is complete.
//!
//! Names: `init.mp4`, `seg<msn>.ts` / `seg<msn>.m4s`, parts
//! `seg<msn>.<part>.ts` / `seg<msn>.<part>.m4s`; after the `n`th change of
//! tracks, `init<n>.mp4`. A segmenter made
//! [`with_epoch`](HlsSegmenter::with_epoch) puts its epoch `E` (written in
//! base 36) in every name: `init-E.mp4`, `init-E-<n>.mp4`, `seg-E-<msn>.m4s`,
//! `seg-E-<msn>.<part>.m4s`, so that objects of two streams published under
//! one URL at different times never share a name, and a cache may keep each
//! for as long as it likes.

use super::playlist::{MediaPlaylist, PlaylistPart};
use crate::frame::{FrameKind, MediaFrame, TrackId, TrackSet};
use crate::media::fmp4::{Fmp4Config, Fmp4Error, Fmp4Muxer, Fragment};
use crate::media::ts::mux::TsMuxError;
use crate::media::ts::{TsMuxer, TsMuxerConfig};
use crate::time::MediaTime;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use bytes::{Bytes, BytesMut};

/// The container of the segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentFormat {
    /// MPEG-2 transport stream segments.
    Ts,
    /// Fragmented MP4 (CMAF) segments with an init segment.
    Fmp4,
}

/// Segmenter settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HlsConfig {
    /// TS or fMP4.
    pub format: SegmentFormat,
    /// The target segment duration in seconds: a key frame after this much
    /// starts a new segment.
    pub target_duration: u32,
    /// LL-HLS part duration in microseconds.
    pub part_duration_us: Option<u64>,
    /// Segments kept in the playlist.
    pub window: usize,
    /// The largest segment in bytes before a cut is forced.
    pub max_segment_bytes: usize,
    /// `EXT-X-PLAYLIST-TYPE` (`EVENT` for a recording that keeps every
    /// segment; none for a live sliding window).
    pub playlist_type: Option<super::PlaylistType>,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            format: SegmentFormat::Fmp4,
            target_duration: 2,
            part_duration_us: None,
            window: 6,
            max_segment_bytes: 64 << 20,
            playlist_type: None,
        }
    }
}

/// What the segmenter produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlsEvent {
    /// The fMP4 init segment (once, before any part or segment).
    Init {
        /// Its URI.
        uri: String,
        /// Its bytes.
        data: Bytes,
    },
    /// An LL-HLS part was published.
    Part {
        /// Its URI.
        uri: String,
        /// Its bytes.
        data: Bytes,
    },
    /// A segment was completed and listed.
    Segment {
        /// Its URI.
        uri: String,
        /// Its bytes.
        data: Bytes,
    },
    /// A segment left the window: `seg<msn>.ts`/`.m4s` and its parts
    /// `seg<msn>.<0..parts>.ts`/`.m4s` may be deleted.
    Removed {
        /// The segment's URI.
        uri: String,
        /// How many parts it had.
        parts: u32,
    },
    /// The playlist changed: answer waiting blocking requests again.
    PlaylistUpdated,
}

/// How a segmenter names its objects (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Names {
    epoch: u64,
    ext: &'static str,
}

/// `n` in base 36 (lower case).
fn base36(mut n: u64) -> String {
    let mut digits = alloc::vec::Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

impl Names {
    fn new(epoch: u64, format: SegmentFormat) -> Self {
        let ext = match format {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Fmp4 => "m4s",
        };
        Names { epoch, ext }
    }

    /// `seg<msn>` or `seg-E-<msn>`.
    fn stem(&self, msn: u64) -> String {
        if self.epoch == 0 {
            format!("seg{msn}")
        } else {
            format!("seg-{}-{msn}", base36(self.epoch))
        }
    }

    fn segment(&self, msn: u64) -> String {
        format!("{}.{}", self.stem(msn), self.ext)
    }

    fn part(&self, msn: u64, part: u32) -> String {
        format!("{}.{part}.{}", self.stem(msn), self.ext)
    }

    /// The init segment after `changes` changes of tracks.
    fn init(&self, changes: u32) -> String {
        match (self.epoch, changes) {
            (0, 0) => String::from("init.mp4"),
            (0, n) => format!("init{n}.mp4"),
            (e, 0) => format!("init-{}.mp4", base36(e)),
            (e, n) => format!("init-{}-{n}.mp4", base36(e)),
        }
    }
}

/// The TS muxer settings for a segmenter: audio frames grouped four to a
/// PES when no LL-HLS parts are made (parts want every frame out at once).
fn ts_config(config: &HlsConfig) -> TsMuxerConfig {
    TsMuxerConfig {
        audio_frames_per_pes: if config.part_duration_us.is_some() {
            1
        } else {
            4
        },
        ..TsMuxerConfig::default()
    }
}

/// Why a frame could not be segmented.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HlsError {
    /// From the TS muxer.
    #[error(transparent)]
    Ts(#[from] TsMuxError),
    /// From the fMP4 muxer.
    #[error(transparent)]
    Fmp4(#[from] Fmp4Error),
}

#[derive(Debug)]
enum Muxer {
    Ts(Box<TsMuxer>),
    Fmp4(Box<Fmp4Muxer>),
}

/// The segmenter. Push frames in decode order, drain
/// [`poll_event`](HlsSegmenter::poll_event), serve
/// [`playlist`](HlsSegmenter::playlist).
#[derive(Debug)]
pub struct HlsSegmenter {
    config: HlsConfig,
    tracks: TrackSet,
    muxer: Muxer,
    playlist: MediaPlaylist,
    lead: TrackId,
    audio_only: bool,
    open: BytesMut,
    open_start: Option<MediaTime>,
    open_duration: f64,
    open_parts: u32,
    last_lead: Option<(MediaTime, i64)>,
    parts_of: VecDeque<(String, u32)>,
    events: VecDeque<HlsEvent>,
    peak_bps: u64,
    total_bits: u64,
    total_secs: f64,
    inits: u32,
    names: Names,
    wall_clock: Option<(MediaTime, i64)>,
    /// TS parts: the first lead frame of the part in progress, whether it
    /// is a key frame, and how much of `open` earlier parts published.
    ts_part: Option<(MediaTime, bool)>,
    ts_part_offset: usize,
    /// The segment in progress starts with an independent frame.
    open_independent: bool,
    /// The lead track's last key frame, or the last time one was asked
    /// for since (see [`HlsSegmenter::take_key_frame_wanted`]).
    key_clock: Option<MediaTime>,
    /// A key frame is overdue and nobody took the news yet.
    key_wanted: bool,
}

impl HlsSegmenter {
    /// A segmenter for these tracks.
    pub fn new(tracks: &TrackSet, config: HlsConfig) -> Result<Self, HlsError> {
        Self::with_epoch(tracks, config, 0)
    }

    /// A segmenter whose names carry `epoch` (see the module docs): give
    /// each stream published under one URL its own, e.g. from the time it
    /// started. Epoch 0 is [`new`](Self::new)'s names.
    pub fn with_epoch(tracks: &TrackSet, config: HlsConfig, epoch: u64) -> Result<Self, HlsError> {
        let names = Names::new(epoch, config.format);
        let mut playlist = MediaPlaylist::new(config.target_duration, config.window);
        playlist.playlist_type = config.playlist_type;
        let mut events = VecDeque::new();
        let muxer = match config.format {
            SegmentFormat::Ts => {
                playlist.part_target = config.part_duration_us.map(|us| us as f64 / 1e6);
                if config.part_duration_us.is_some() {
                    playlist.set_preload_hint(Some(names.part(0, 0)));
                }
                Muxer::Ts(Box::new(TsMuxer::new(tracks, ts_config(&config))?))
            }
            SegmentFormat::Fmp4 => {
                let m = Fmp4Muxer::new(
                    tracks,
                    Fmp4Config {
                        segment_duration_us: u64::from(config.target_duration) * 1_000_000,
                        part_duration_us: config.part_duration_us,
                        max_fragment_bytes: config.max_segment_bytes,
                    },
                )?;
                playlist.map_uri = Some(names.init(0));
                playlist.part_target = config.part_duration_us.map(|us| us as f64 / 1e6);
                if config.part_duration_us.is_some() {
                    playlist.set_preload_hint(Some(names.part(0, 0)));
                }
                events.push_back(HlsEvent::Init {
                    uri: names.init(0),
                    data: m.init_segment(),
                });
                Muxer::Fmp4(Box::new(m))
            }
        };
        let lead = tracks
            .video()
            .or_else(|| tracks.audio())
            .map_or(TrackId(0), |t| t.id);
        Ok(HlsSegmenter {
            config,
            tracks: tracks.clone(),
            muxer,
            playlist,
            lead,
            audio_only: !tracks.has_video(),
            open: BytesMut::new(),
            open_start: None,
            open_duration: 0.0,
            open_parts: 0,
            last_lead: None,
            parts_of: VecDeque::new(),
            events,
            peak_bps: 0,
            total_bits: 0,
            total_secs: 0.0,
            inits: 0,
            names,
            wall_clock: None,
            ts_part: None,
            ts_part_offset: 0,
            open_independent: true,
            key_clock: None,
            key_wanted: false,
        })
    }

    /// The media playlist (render it, or answer blocking requests with it).
    pub fn playlist(&self) -> &MediaPlaylist {
        &self.playlist
    }

    /// Sets the `EXT-X-RENDITION-REPORT`s of the other renditions (LL-HLS
    /// with several renditions; the host knows where each stands).
    pub fn set_rendition_reports(&mut self, reports: alloc::vec::Vec<super::RenditionReport>) {
        self.playlist.rendition_reports = reports;
    }

    /// Where this rendition stands, for the other renditions' reports.
    pub fn rendition_report(&self, uri: String) -> super::RenditionReport {
        let parts = self.playlist.open_parts().len() as u64;
        let next = self.playlist.next_msn();
        match (parts, next) {
            (0, 0) => super::RenditionReport {
                uri,
                last_msn: 0,
                last_part: None,
            },
            (0, n) => super::RenditionReport {
                uri,
                last_msn: n - 1,
                last_part: self
                    .playlist
                    .segments()
                    .last()
                    .and_then(|s| (s.parts.len() as u64).checked_sub(1)),
            },
            (p, n) => super::RenditionReport {
                uri,
                last_msn: n,
                last_part: Some(p - 1),
            },
        }
    }

    /// The tracks being segmented.
    pub fn tracks(&self) -> &TrackSet {
        &self.tracks
    }

    /// Peak segment bit rate so far (bits per second), for `BANDWIDTH`.
    pub fn peak_bandwidth(&self) -> u64 {
        self.peak_bps
    }

    /// Average bit rate so far, for `AVERAGE-BANDWIDTH`.
    pub fn average_bandwidth(&self) -> u64 {
        if self.total_secs > 0.0 {
            (self.total_bits as f64 / self.total_secs) as u64
        } else {
            0
        }
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<HlsEvent> {
        self.events.pop_front()
    }

    fn part_uri(&self, msn: u64, part: u32) -> String {
        self.names.part(msn, part)
    }

    /// Whether `uri` names the segment in progress or one of its parts not
    /// published yet (the preload hint, or one after it): an origin holds a
    /// request for it until it exists (RFC 8216bis §6.2.6).
    pub fn is_upcoming(&self, uri: &str) -> bool {
        let next = self.playlist.next_msn();
        if uri == self.names.segment(next) {
            return true;
        }
        let stem = self.names.stem(next);
        uri.strip_prefix(stem.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(self.names.ext))
            .and_then(|r| r.strip_suffix('.'))
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p >= self.open_parts)
    }

    /// Lists a part of the segment in progress and hands out its bytes.
    fn publish_part(&mut self, data: Bytes, secs: f64, independent: bool) {
        let msn = self.playlist.next_msn();
        let uri = self.part_uri(msn, self.open_parts);
        let hint = self.part_uri(msn, self.open_parts + 1);
        self.open_parts += 1;
        let seg_uri = self.segment_uri(msn);
        self.playlist.push_part(
            &seg_uri,
            PlaylistPart {
                uri: uri.clone(),
                duration: secs,
                independent,
            },
            Some(hint),
        );
        self.events.push_back(HlsEvent::Part { uri, data });
        self.events.push_back(HlsEvent::PlaylistUpdated);
    }

    /// Publishes the TS bytes written since the last part as a part ending
    /// at `end` (lead-track time).
    fn flush_ts_part(&mut self, end: MediaTime) {
        if self.config.part_duration_us.is_none() || !matches!(self.muxer, Muxer::Ts(_)) {
            return;
        }
        let Some((start, independent)) = self.ts_part.take() else {
            return;
        };
        if self.open.len() <= self.ts_part_offset {
            return;
        }
        let data = Bytes::copy_from_slice(&self.open[self.ts_part_offset..]);
        self.ts_part_offset = self.open.len();
        let secs = end.ticks_since(start) as f64 / f64::from(end.timescale.hz());
        self.publish_part(data, secs, independent);
    }

    /// The end of the lead track's last frame (its start plus the duration
    /// of the one before it).
    fn lead_end(&self) -> Option<MediaTime> {
        self.last_lead
            .map(|(t, d)| MediaTime::new(t.ticks.saturating_add(d), t.timescale))
    }

    fn segment_uri(&self, msn: u64) -> String {
        self.names.segment(msn)
    }

    /// Anchors media time to the wall clock: media time `at` is Unix time
    /// `unix_ms` (milliseconds). Segments then carry
    /// `EXT-X-PROGRAM-DATE-TIME`. The kernel reads no clock: the host passes
    /// its own, and anchors again after a discontinuity.
    pub fn set_wall_clock(&mut self, at: MediaTime, unix_ms: i64) {
        self.wall_clock = Some((at, unix_ms));
    }

    /// Changes the tracks (a new resolution, new parameter sets, a codec
    /// change): the segment in progress is completed, the next one follows
    /// a discontinuity, and for fMP4 a new init segment (`init<n>.mp4`, or
    /// `init-E-<n>.mp4` with an epoch) is
    /// published and named by `EXT-X-MAP` from then on. Unchanged tracks
    /// change nothing.
    pub fn update_tracks(&mut self, tracks: &TrackSet) -> Result<(), HlsError> {
        if *tracks == self.tracks {
            return Ok(());
        }
        self.close_open_segment();
        self.playlist.mark_discontinuity();
        self.last_lead = None;
        self.muxer = match self.config.format {
            SegmentFormat::Ts => {
                Muxer::Ts(Box::new(TsMuxer::new(tracks, ts_config(&self.config))?))
            }
            SegmentFormat::Fmp4 => {
                let m = Fmp4Muxer::new(tracks, self.fmp4_config())?;
                self.inits += 1;
                let uri = self.names.init(self.inits);
                self.playlist.map_uri = Some(uri.clone());
                self.events.push_back(HlsEvent::Init {
                    uri,
                    data: m.init_segment(),
                });
                Muxer::Fmp4(Box::new(m))
            }
        };
        self.tracks = tracks.clone();
        self.audio_only = !tracks.has_video();
        self.key_clock = None;
        self.lead = tracks
            .video()
            .or_else(|| tracks.audio())
            .map_or(TrackId(0), |t| t.id);
        self.events.push_back(HlsEvent::PlaylistUpdated);
        Ok(())
    }

    fn fmp4_config(&self) -> Fmp4Config {
        Fmp4Config {
            segment_duration_us: u64::from(self.config.target_duration) * 1_000_000,
            part_duration_us: self.config.part_duration_us,
            max_fragment_bytes: self.config.max_segment_bytes,
        }
    }

    /// Whether the lead video track went a target duration without a key
    /// frame since this last answered yes. Segments end only at key frames,
    /// so without one the segment in progress grows (up to
    /// [`HlsConfig::max_segment_bytes`]) and new players start far from the
    /// live edge; a host whose publisher sends key frames on request (a
    /// WebRTC publisher answers a PLI; browsers send none unasked) should
    /// ask for one. Yes again each target duration while none comes.
    pub fn take_key_frame_wanted(&mut self) -> bool {
        core::mem::take(&mut self.key_wanted)
    }

    /// Takes one frame.
    pub fn push(&mut self, frame: &MediaFrame) -> Result<(), HlsError> {
        if frame.track == self.lead && !self.audio_only {
            match self.key_clock {
                Some(since) if frame.kind != FrameKind::Key && !frame.discontinuity => {
                    let elapsed =
                        frame.dts.ticks_since(since) as f64 / f64::from(frame.dts.timescale.hz());
                    if elapsed >= f64::from(self.config.target_duration) {
                        self.key_wanted = true;
                        self.key_clock = Some(frame.dts);
                    }
                }
                _ => self.key_clock = Some(frame.dts),
            }
        }
        if frame.track == self.lead {
            if frame.discontinuity && self.open_start.is_some() {
                if let Some(end) = self.lead_end() {
                    self.flush_ts_part(end);
                }
                let lead_duration = self.open_lead_duration();
                match &mut self.muxer {
                    Muxer::Ts(m) => {
                        self.open_duration = lead_duration;
                        m.start_segment();
                    }
                    Muxer::Fmp4(m) => {
                        m.start_new_segment();
                        self.take_fragments();
                    }
                }
                self.finish_open_segment();
                self.playlist.mark_discontinuity();
                self.last_lead = None;
            }
            if let Some((last, _)) = self.last_lead {
                let d = frame.dts.ticks_since(last);
                self.last_lead = Some((frame.dts, d));
            } else {
                self.last_lead = Some((frame.dts, 0));
            }
        }
        if let Muxer::Ts(_) = self.muxer {
            let cut_point =
                frame.track == self.lead && (frame.kind == FrameKind::Key || self.audio_only);
            if let (true, Some(start)) = (frame.track == self.lead, self.open_start) {
                let elapsed =
                    frame.dts.ticks_since(start) as f64 / f64::from(frame.dts.timescale.hz());
                let by_time = cut_point && elapsed >= f64::from(self.config.target_duration);
                // The size bound holds even inside a long GOP.
                let by_size = self.open.len() > self.config.max_segment_bytes;
                if by_time || by_size {
                    self.flush_ts_part(frame.dts);
                    self.open_duration = elapsed;
                    self.finish_open_segment();
                    if let Muxer::Ts(m) = &mut self.muxer {
                        m.start_segment();
                    }
                } else if let (Some(part_us), Some((part_start, _))) =
                    (self.config.part_duration_us, self.ts_part)
                {
                    // Cut before the part would pass the part target with
                    // one more frame of the recent spacing.
                    let step = self.last_lead.map_or(0, |(_, d)| d);
                    let next = MediaTime::new(
                        frame.dts.ticks_since(part_start) + step,
                        frame.dts.timescale,
                    );
                    if next.as_micros() > part_us as i64 {
                        self.flush_ts_part(frame.dts);
                    }
                }
            }
            if frame.track == self.lead && self.open_start.is_none() {
                self.open_start = Some(frame.dts);
                self.open_independent = cut_point;
            }
            if frame.track == self.lead && self.ts_part.is_none() {
                self.ts_part = Some((frame.dts, cut_point));
            }
        }
        match &mut self.muxer {
            Muxer::Ts(m) => {
                m.write_frame(frame, &mut self.open)?;
            }
            Muxer::Fmp4(m) => {
                m.push(frame)?;
                self.take_fragments();
            }
        }
        Ok(())
    }

    fn take_fragments(&mut self) {
        loop {
            let Muxer::Fmp4(m) = &mut self.muxer else {
                return;
            };
            let Some(frag) = m.poll_fragment() else {
                return;
            };
            self.on_fragment(frag);
        }
    }

    fn on_fragment(&mut self, frag: Fragment) {
        if frag.starts_segment && !self.open.is_empty() {
            self.finish_open_segment();
        }
        if self.open_start.is_none() {
            self.open_start = Some(frag.start);
            self.open_independent = frag.independent;
        }
        let secs = frag.duration.ticks as f64 / f64::from(frag.duration.timescale.hz());
        self.open_duration += secs;
        self.open.extend_from_slice(&frag.data);
        if self.config.part_duration_us.is_some() {
            self.publish_part(frag.data, secs, frag.independent);
        }
    }

    fn finish_open_segment(&mut self) {
        if let Muxer::Ts(m) = &mut self.muxer {
            // Audio the muxer holds belongs to this segment. Its frames were
            // accepted by `push`, so writing them cannot fail on their config.
            let _ = m.flush(&mut self.open);
        }
        if self.open.is_empty() {
            return;
        }
        let msn = self.playlist.next_msn();
        let uri = self.segment_uri(msn);
        let data = self.open.split().freeze();
        let duration = self.open_duration;
        if duration > 0.0 {
            let bps = (data.len() as f64 * 8.0 / duration) as u64;
            self.peak_bps = self.peak_bps.max(bps);
            self.total_bits += data.len() as u64 * 8;
            self.total_secs += duration;
        }
        self.parts_of.push_back((uri.clone(), self.open_parts));
        if !self.open_independent {
            self.playlist.mark_dependent();
        }
        let pdt = match (self.wall_clock, self.open_start) {
            (Some((at, unix_ms)), Some(start)) => {
                Some(unix_ms + start.as_millis() - at.as_millis())
            }
            _ => None,
        };
        for removed in self.playlist.push_segment_at(uri.clone(), duration, pdt) {
            let parts = match self.parts_of.front() {
                Some((u, n)) if *u == removed => *n,
                _ => 0,
            };
            self.parts_of.pop_front();
            self.events.push_back(HlsEvent::Removed {
                uri: removed,
                parts,
            });
        }
        if self.config.part_duration_us.is_some() {
            let hint = self.part_uri(msn + 1, 0);
            self.playlist.set_preload_hint(Some(hint));
        }
        self.events.push_back(HlsEvent::Segment { uri, data });
        self.events.push_back(HlsEvent::PlaylistUpdated);
        self.open_start = None;
        self.open_duration = 0.0;
        self.open_parts = 0;
        self.ts_part = None;
        self.ts_part_offset = 0;
    }

    /// The open TS segment's duration from its first lead frame to the end
    /// of its last one (which takes the duration of the one before it).
    fn open_lead_duration(&self) -> f64 {
        match (self.open_start, self.last_lead) {
            (Some(start), Some((last, d))) => {
                (last.ticks_since(start) + d) as f64 / f64::from(start.timescale.hz())
            }
            _ => self.open_duration,
        }
    }

    /// Completes the segment in progress with what the muxer still holds
    /// (its last frame taking the duration of the one before it).
    fn close_open_segment(&mut self) {
        if let Some(end) = self.lead_end() {
            self.flush_ts_part(end);
        }
        let lead_duration = self.open_lead_duration();
        match &mut self.muxer {
            Muxer::Ts(_) => self.open_duration = lead_duration,
            Muxer::Fmp4(m) => {
                m.flush();
                self.take_fragments();
            }
        }
        self.finish_open_segment();
    }

    /// Ends the stream: the last segment is completed (its last frame taking
    /// the duration of the one before it) and the playlist gets
    /// `EXT-X-ENDLIST`.
    pub fn finish(&mut self) {
        self.close_open_segment();
        self.playlist.end();
        self.events.push_back(HlsEvent::PlaylistUpdated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::hls::BlockingAnswer;
    use crate::media::ts::demux::tests::{demux, H264_OPUS};
    use alloc::vec::Vec;

    fn run(config: HlsConfig) -> (HlsSegmenter, Vec<HlsEvent>) {
        let d = demux(H264_OPUS, 65536);
        let mut s = HlsSegmenter::new(&d.track_set(), config).unwrap();
        let mut events = Vec::new();
        for f in &d.frames {
            s.push(f).unwrap();
            while let Some(e) = s.poll_event() {
                events.push(e);
            }
        }
        s.finish();
        while let Some(e) = s.poll_event() {
            events.push(e);
        }
        (s, events)
    }

    #[test]
    fn ts_segments_cut_on_key_frames() {
        let (s, events) = run(HlsConfig {
            format: SegmentFormat::Ts,
            target_duration: 1,
            ..HlsConfig::default()
        });
        let segs: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HlsEvent::Segment { uri, data } => Some((uri.clone(), data.len())),
                _ => None,
            })
            .collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].0, "seg0.ts");
        let p = s.playlist().render();
        assert!(
            p.contains("#EXT-X-TARGETDURATION:1\n#EXT-X-INDEPENDENT-SEGMENTS\n"),
            "{p}"
        );
        assert!(
            p.contains("#EXTINF:1.00000,\nseg0.ts\n#EXTINF:1.00000,\nseg1.ts\n#EXT-X-ENDLIST\n"),
            "{p}"
        );
        assert!(s.peak_bandwidth() > 0 && s.average_bandwidth() <= s.peak_bandwidth());
        assert!(!p.contains("PROGRAM-DATE-TIME"));
    }

    #[test]
    fn ll_hls_parts_and_blocking_reload() {
        let d = demux(H264_OPUS, 65536);
        let cfg = HlsConfig {
            format: SegmentFormat::Fmp4,
            target_duration: 1,
            part_duration_us: Some(250_000),
            ..HlsConfig::default()
        };
        let mut s = HlsSegmenter::new(&d.track_set(), cfg).unwrap();
        assert!(matches!(s.poll_event(), Some(HlsEvent::Init { .. })));
        assert_eq!(
            s.playlist().blocking_request(Some(0), Some(0), false),
            BlockingAnswer::Wait
        );
        let mut parts = 0;
        let mut answered_at = None;
        for (i, f) in d.frames.iter().enumerate() {
            s.push(f).unwrap();
            while let Some(e) = s.poll_event() {
                if let HlsEvent::Part { .. } = e {
                    parts += 1;
                }
            }
            if answered_at.is_none()
                && matches!(
                    s.playlist().blocking_request(Some(0), Some(0), false),
                    BlockingAnswer::Ready(_)
                )
            {
                answered_at = Some(i);
            }
        }
        // The first part (250 ms) is ready long before the segment is.
        assert!(answered_at.unwrap() < 30);
        let p = s.playlist().render();
        assert!(
            p.contains("#EXT-X-PART:DURATION=0.23333,URI=\"seg0.0.m4s\",INDEPENDENT=YES\n"),
            "{p}"
        );
        assert!(
            p.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg1."),
            "{p}"
        );
        assert!(parts >= 6);
        let r = s.rendition_report("other.m3u8".into());
        assert_eq!(r.last_msn, s.playlist().next_msn());
        assert_eq!(
            r.last_part,
            Some(s.playlist().open_parts().len() as u64 - 1)
        );
        // No part is longer than PART-TARGET (RFC 8216bis §4.4.3.7).
        let all_parts = s
            .playlist()
            .segments()
            .flat_map(|x| x.parts.iter())
            .chain(s.playlist().open_parts());
        for part in all_parts {
            assert!(part.duration <= 0.25 + 1e-9, "{part:?}");
        }
        s.finish();
        let p = s.playlist().render();
        assert!(
            p.contains("#EXTINF:1.00000,\nseg1.m4s\n#EXT-X-ENDLIST\n"),
            "{p}"
        );
    }

    #[test]
    fn discontinuity_starts_a_new_segment_in_both_formats() {
        let d = demux(H264_OPUS, 65536);
        for format in [SegmentFormat::Ts, SegmentFormat::Fmp4] {
            let mut s = HlsSegmenter::new(
                &d.track_set(),
                HlsConfig {
                    format,
                    target_duration: 1,
                    ..HlsConfig::default()
                },
            )
            .unwrap();
            let mut segments = 0;
            // The stream, then the stream again from its start: the clock
            // jumps back, flagged on the first frame of each track.
            for round in 0..2 {
                let mut seen = [false; 2];
                for f in &d.frames {
                    let mut f = f.clone();
                    let t = usize::from(f.track.0);
                    if round == 1 && !seen[t] {
                        f.discontinuity = true;
                    }
                    seen[t] = true;
                    s.push(&f).unwrap();
                    while let Some(e) = s.poll_event() {
                        segments += usize::from(matches!(e, HlsEvent::Segment { .. }));
                    }
                }
            }
            s.finish();
            while let Some(e) = s.poll_event() {
                segments += usize::from(matches!(e, HlsEvent::Segment { .. }));
            }
            assert_eq!(segments, 4, "{format:?}");
            let p = s.playlist().render();
            assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{p}");
            assert_eq!(p.matches("#EXTINF:1.00000,").count(), 4, "{format:?}: {p}");
        }
    }

    #[test]
    fn new_tracks_bring_a_new_init_segment_and_a_discontinuity() {
        let d = demux(H264_OPUS, 65536);
        let other = demux(crate::media::ts::demux::tests::H265_AAC, 65536);
        let cfg = HlsConfig {
            format: SegmentFormat::Fmp4,
            target_duration: 1,
            ..HlsConfig::default()
        };
        let mut s = HlsSegmenter::new(&d.track_set(), cfg).unwrap();
        let mut inits = Vec::new();
        let drain = |s: &mut HlsSegmenter, inits: &mut Vec<String>| {
            while let Some(e) = s.poll_event() {
                if let HlsEvent::Init { uri, .. } = e {
                    inits.push(uri);
                }
            }
        };
        for f in &d.frames {
            s.push(f).unwrap();
            drain(&mut s, &mut inits);
        }
        s.update_tracks(&d.track_set()).unwrap(); // unchanged: nothing happens
        drain(&mut s, &mut inits);
        assert_eq!(inits, ["init.mp4"]);
        s.update_tracks(&other.track_set()).unwrap();
        for f in &other.frames {
            s.push(f).unwrap();
            drain(&mut s, &mut inits);
        }
        s.finish();
        drain(&mut s, &mut inits);
        assert_eq!(inits, ["init.mp4", "init1.mp4"]);
        let p = s.playlist().render();
        assert!(p.contains("#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF"), "{p}");
        assert!(
            p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXTINF"),
            "{p}"
        );
        assert_eq!(p.matches("#EXT-X-MAP").count(), 2, "{p}");
    }

    #[test]
    fn an_epoch_goes_in_every_name() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36 * 36 + 1), "101");
        let d = demux(H264_OPUS, 65536);
        let other = demux(crate::media::ts::demux::tests::H265_AAC, 65536);
        let cfg = HlsConfig {
            format: SegmentFormat::Fmp4,
            target_duration: 1,
            part_duration_us: Some(250_000),
            ..HlsConfig::default()
        };
        let mut s = HlsSegmenter::with_epoch(&d.track_set(), cfg, 36 * 36 + 1).unwrap();
        assert!(s.is_upcoming("seg-101-0.0.m4s"));
        assert!(s.is_upcoming("seg-101-0.m4s"));
        assert!(!s.is_upcoming("seg0.0.m4s") && !s.is_upcoming("seg-101-1.0.m4s"));
        let mut names = Vec::new();
        for f in &d.frames {
            s.push(f).unwrap();
            while let Some(e) = s.poll_event() {
                match e {
                    HlsEvent::Init { uri, .. }
                    | HlsEvent::Part { uri, .. }
                    | HlsEvent::Segment { uri, .. } => names.push(uri),
                    _ => {}
                }
            }
        }
        assert_eq!(names[0], "init-101.mp4");
        assert_eq!(names[1], "seg-101-0.0.m4s");
        assert!(names.contains(&String::from("seg-101-0.m4s")));
        // A published part is not upcoming; the hinted one is.
        assert!(!s.is_upcoming("seg-101-1.0.m4s"));
        let hint = format!("seg-101-1.{}.m4s", s.playlist().open_parts().len());
        assert!(s.is_upcoming(&hint), "{hint}");
        s.update_tracks(&other.track_set()).unwrap();
        let mut inits = Vec::new();
        while let Some(e) = s.poll_event() {
            if let HlsEvent::Init { uri, .. } = e {
                inits.push(uri);
            }
        }
        assert_eq!(inits, ["init-101-1.mp4"]);
        assert!(s.playlist().render().contains("URI=\"init-101.mp4\""));
    }

    /// A segment's bytes are exactly its parts' bytes in order, so a player
    /// may fetch either.
    #[test]
    fn segments_are_their_parts_concatenated() {
        for format in [SegmentFormat::Fmp4, SegmentFormat::Ts] {
            let (s, events) = run(HlsConfig {
                format,
                target_duration: 1,
                part_duration_us: Some(200_000),
                ..HlsConfig::default()
            });
            let mut parts = BytesMut::new();
            let mut segments = 0;
            let mut part_count = 0;
            for e in events {
                match e {
                    HlsEvent::Part { data, uri } => {
                        assert!(uri.ends_with(if format == SegmentFormat::Ts {
                            ".ts"
                        } else {
                            ".m4s"
                        }));
                        parts.extend_from_slice(&data);
                        part_count += 1;
                    }
                    HlsEvent::Segment { data, .. } => {
                        assert_eq!(data, parts.split().freeze(), "{format:?}");
                        segments += 1;
                    }
                    _ => {}
                }
            }
            assert_eq!(segments, 2, "{format:?}");
            assert!(parts.is_empty());
            assert!(part_count >= 10, "{format:?}: {part_count} parts");
            // Every part within PART-TARGET, the first of each segment independent.
            for seg in s.playlist().segments() {
                assert!(seg.parts[0].independent, "{format:?}");
                for p in &seg.parts {
                    assert!(p.duration <= 0.2 + 1e-9, "{format:?}: {p:?}");
                }
                let total: f64 = seg.parts.iter().map(|p| p.duration).sum();
                assert!(
                    (total - seg.duration).abs() < 1e-6,
                    "{format:?}: {total} vs {}",
                    seg.duration
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Random frame sequences in either format, with or without parts:
        /// nothing panics, every segment is its parts concatenated, and the
        /// listed durations add up to the lead track's span.
        #[test]
        fn random_streams(
            steps in proptest::collection::vec((proptest::bool::ANY, 1i64..6000, 0u8..10, 1usize..300), 2..150),
            ts in proptest::bool::ANY,
            part in proptest::option::of(50_000u64..600_000),
        ) {
            let d = demux(H264_OPUS, 65536);
            let set = d.track_set();
            let format = if ts { SegmentFormat::Ts } else { SegmentFormat::Fmp4 };
            let mut s = HlsSegmenter::new(&set, HlsConfig { format, target_duration: 1, part_duration_us: part, window: 1000, ..HlsConfig::default() }).unwrap();
            let video = d.of(0)[0].clone();
            let audio = d.of(1)[0].clone();
            let (mut vt, mut at) = (0i64, 0i64);
            let mut first_v = None;
            let mut last_v = 0;
            let mut events = Vec::new();
            for (i, &(is_video, step, key, len)) in steps.iter().enumerate() {
                let f = if is_video || i == 0 {
                    vt += step;
                    first_v.get_or_insert(vt);
                    last_v = vt;
                    let mut f = video.clone();
                    f.kind = if key == 0 || i == 0 { FrameKind::Key } else { FrameKind::Delta };
                    f.dts = MediaTime::new(vt, crate::time::Timescale::MPEG);
                    f.pts = f.dts;
                    f
                } else {
                    at += step;
                    let mut f = audio.clone();
                    f.payload = f.payload.slice(..len.min(f.payload.len()));
                    f.dts = MediaTime::new(at, crate::time::Timescale::MPEG);
                    f.pts = f.dts;
                    f
                };
                s.push(&f).unwrap();
                while let Some(e) = s.poll_event() {
                    events.push(e);
                }
            }
            s.finish();
            while let Some(e) = s.poll_event() {
                events.push(e);
            }
            let mut parts = BytesMut::new();
            for e in events {
                match e {
                    HlsEvent::Part { data, .. } => parts.extend_from_slice(&data),
                    HlsEvent::Segment { data, .. } if part.is_some() => {
                        proptest::prop_assert_eq!(data, parts.split().freeze());
                    }
                    _ => {}
                }
            }
            let total: f64 = s.playlist().segments().map(|x| x.duration).sum();
            let span = (last_v - first_v.unwrap_or(0)) as f64 / 90_000.0;
            // The last frame takes the duration of the one before it.
            proptest::prop_assert!(total >= span - 1e-6 && total <= span + 6000.0 / 90_000.0 + 1e-6, "{} vs {}", total, span);
            let text = s.playlist().render();
            proptest::prop_assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        }
    }

    /// A publisher that sends key frames only when asked (a browser over
    /// WHIP): the segmenter asks once a target duration passed without
    /// one, again each target duration while none comes, and not after
    /// one came.
    #[test]
    fn asks_for_a_key_frame_when_one_is_overdue() {
        let d = demux(H264_OPUS, 65536);
        for format in [SegmentFormat::Ts, SegmentFormat::Fmp4] {
            let mut s = HlsSegmenter::new(
                &d.track_set(),
                HlsConfig {
                    format,
                    target_duration: 2,
                    ..HlsConfig::default()
                },
            )
            .unwrap();
            let video = d.of(0)[0].clone();
            let mut asked = Vec::new();
            // 30 pictures a second for 7 s; key frames at 0 s and at 4.5 s.
            for i in 0..210i64 {
                let mut f = video.clone();
                f.kind = if i == 0 || i == 135 {
                    FrameKind::Key
                } else {
                    FrameKind::Delta
                };
                f.dts = MediaTime::new(i * 3000, crate::time::Timescale::MPEG);
                f.pts = f.dts;
                s.push(&f).unwrap();
                if s.take_key_frame_wanted() {
                    asked.push(i);
                }
                assert!(!s.take_key_frame_wanted(), "told twice");
            }
            // At 2 s and 4 s; after the key frame at 4.5 s, at 6.5 s.
            assert_eq!(asked, [60, 120, 195], "{format:?}");
        }
    }

    /// Frames stamped in milliseconds (as RTMP delivers them) segment the
    /// same way: per-track timescales are the track's own.
    #[test]
    fn millisecond_time_stamps() {
        let d = demux(H264_OPUS, 65536);
        let mut set = TrackSet::new();
        for t in d.track_set().iter() {
            let mut t = t.clone();
            t.timescale = crate::time::Timescale::MILLIS;
            set.upsert(t).unwrap();
        }
        for format in [SegmentFormat::Ts, SegmentFormat::Fmp4] {
            let mut s = HlsSegmenter::new(
                &set,
                HlsConfig {
                    format,
                    target_duration: 1,
                    ..HlsConfig::default()
                },
            )
            .unwrap();
            for f in &d.frames {
                let mut f = f.clone();
                f.pts = f.pts.rescale(crate::time::Timescale::MILLIS);
                f.dts = f.dts.rescale(crate::time::Timescale::MILLIS);
                s.push(&f).unwrap();
                while s.poll_event().is_some() {}
            }
            s.finish();
            let durations: Vec<f64> = s.playlist().segments().map(|x| x.duration).collect();
            assert_eq!(durations.len(), 2, "{format:?}");
            for d in durations {
                assert!((d - 1.0).abs() < 0.002, "{format:?}: {d}");
            }
        }
    }

    #[test]
    fn multivariant_from_tracks() {
        let (s, _) = run(HlsConfig::default());
        let v = crate::media::hls::Variant::for_tracks(
            "live.m3u8".into(),
            s.tracks(),
            s.peak_bandwidth(),
            Some(s.average_bandwidth()),
        );
        let m = crate::media::hls::MultivariantPlaylist {
            variants: alloc::vec![v],
        }
        .render();
        assert!(
            m.contains(
                "CODECS=\"avc1.4d400d,opus\",RESOLUTION=320x240,FRAME-RATE=30.000\nlive.m3u8\n"
            ),
            "{m}"
        );
    }
}
