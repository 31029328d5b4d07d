//! From a publisher's FLV tags to the kernel's frames and tracks.
//!
//! Video goes to track 0 and audio to track 1. Each track's 32-bit RTMP
//! timestamps are extended to 64 bits ([`Wrap32`]); a timestamp that goes
//! backwards or jumps forward by more than the configured limit is repaired
//! (the track continues from its previous time by its usual step) and the
//! frame carries `discontinuity`, so nothing downstream sees time run
//! backwards. Sequence headers become [`TrackInfo`] configuration, sent as a
//! [`SessionEvent::Tracks`] before the frames that need it.

use crate::amf0::Amf0Value;
use crate::error::Result;
use crate::flv::{self, FlvTag, TagPacket, VideoFrameType};
use arcly_core::frame::{CodecId, FrameKind, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::session::SessionEvent;
use arcly_core::time::{MediaTime, Timescale, Wrap32};
use bytes::Bytes;
use std::collections::VecDeque;

/// The track id of a publisher's video.
pub const VIDEO_TRACK: TrackId = TrackId(0);
/// The track id of a publisher's audio.
pub const AUDIO_TRACK: TrackId = TrackId(1);

/// One track's clock: extension, repair, and the last time handed out.
#[derive(Clone, Debug, Default)]
pub struct TrackClock {
    wrap: Wrap32,
    offset: i64,
    last: Option<i64>,
    step: i64,
}

impl TrackClock {
    /// Maps a raw 32-bit timestamp to a monotonic 64-bit time in
    /// milliseconds, and whether it had to be repaired.
    pub fn map(&mut self, raw: u32, max_jump: i64) -> (i64, bool) {
        let t = self.wrap.extend(u64::from(raw)) + self.offset;
        let Some(last) = self.last else {
            self.last = Some(t);
            return (t, false);
        };
        let d = t - last;
        if (0..=max_jump).contains(&d) {
            if d > 0 {
                self.step = d;
            }
            self.last = Some(t);
            return (t, false);
        }
        let fixed = last + self.step;
        self.offset += fixed - t;
        self.last = Some(fixed);
        (fixed, true)
    }
}

/// Turns tags into events for one publishing stream.
#[derive(Debug)]
pub struct Ingest {
    tracks: TrackSet,
    video: TrackClock,
    audio: TrackClock,
    max_jump: i64,
    meta_width: u32,
    meta_height: u32,
    /// Frames dropped because their track had no configuration yet.
    pub dropped: u64,
}

impl Ingest {
    /// An ingest that repairs forward jumps larger than `max_jump_ms`.
    pub fn new(max_jump_ms: u32) -> Self {
        Ingest {
            tracks: TrackSet::new(),
            video: TrackClock::default(),
            audio: TrackClock::default(),
            max_jump: i64::from(max_jump_ms),
            meta_width: 0,
            meta_height: 0,
            dropped: 0,
        }
    }

    /// The tracks announced so far.
    pub fn tracks(&self) -> &TrackSet {
        &self.tracks
    }

    /// Reads `onMetaData` for what can fill track parameters (size), and
    /// returns its properties as text.
    pub fn metadata(&mut self, meta: &Amf0Value) -> Vec<(String, String)> {
        let num = |k: &str| meta.get(k).and_then(Amf0Value::as_number).unwrap_or(0.0);
        let (w, h) = (num("width"), num("height"));
        if (1.0..65536.0).contains(&w) && (1.0..65536.0).contains(&h) {
            self.meta_width = w as u32;
            self.meta_height = h as u32;
        }
        meta.as_properties()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.to_text())).collect())
            .unwrap_or_default()
    }

    fn upsert(&mut self, mut t: TrackInfo, out: &mut VecDeque<SessionEvent>) {
        fill_params(&mut t);
        if t.codec.is_video() && t.params.width == 0 {
            t.params.width = self.meta_width;
            t.params.height = self.meta_height;
        }
        if self.tracks.get(t.id) == Some(&t) {
            return;
        }
        // Two tracks per stream never exceed MAX_TRACKS.
        let _ = self.tracks.upsert(t);
        // `.into()` fits the event whether it holds the set or a box of it.
        out.push_back(SessionEvent::Tracks(self.tracks.clone().into()));
    }

    /// Handles a video message body at RTMP time `ts`.
    pub fn video(&mut self, ts: u32, body: &Bytes, out: &mut VecDeque<SessionEvent>) -> Result<()> {
        if body.is_empty() {
            // Some encoders send empty media messages; they carry nothing.
            return Ok(());
        }
        let tag = flv::parse_video(body)?;
        self.tag(VIDEO_TRACK, ts, tag, out);
        Ok(())
    }

    /// Handles an audio message body at RTMP time `ts`.
    pub fn audio(&mut self, ts: u32, body: &Bytes, out: &mut VecDeque<SessionEvent>) -> Result<()> {
        if body.is_empty() {
            return Ok(());
        }
        let tag = flv::parse_audio(body)?;
        self.tag(AUDIO_TRACK, ts, tag, out);
        Ok(())
    }

    fn tag(&mut self, id: TrackId, ts: u32, tag: FlvTag, out: &mut VecDeque<SessionEvent>) {
        let Some(codec) = tag.codec else {
            return;
        };
        match tag.packet {
            TagPacket::SequenceStart(config) => {
                let mut t = TrackInfo::new(id, codec, Timescale::MILLIS, config);
                if codec == CodecId::Mp3 {
                    t.params.sample_rate = legacy_rate(tag.sound_flags);
                }
                self.upsert(t, out);
            }
            TagPacket::Frame { cts, data } => {
                let known = self.tracks.get(id).is_some_and(|t| t.codec == codec);
                if !known {
                    if matches!(codec, CodecId::H264 | CodecId::H265 | CodecId::Aac) {
                        self.dropped += 1;
                        return;
                    }
                    let mut t = TrackInfo::new(id, codec, Timescale::MILLIS, Bytes::new());
                    t.params.sample_rate = legacy_rate(tag.sound_flags);
                    self.upsert(t, out);
                }
                let clock = if id == VIDEO_TRACK {
                    &mut self.video
                } else {
                    &mut self.audio
                };
                let (dts, discontinuity) = clock.map(ts, self.max_jump);
                let kind = if codec.is_audio() {
                    FrameKind::Audio
                } else if tag.frame_type == VideoFrameType::Key {
                    FrameKind::Key
                } else {
                    FrameKind::Delta
                };
                out.push_back(SessionEvent::Frame(MediaFrame {
                    track: id,
                    codec,
                    kind,
                    pts: MediaTime::from_millis(dts + i64::from(cts)),
                    dts: MediaTime::from_millis(dts),
                    payload: data,
                    discontinuity,
                    wire: Default::default(),
                }));
            }
            TagPacket::SequenceEnd | TagPacket::Ignored => {}
        }
    }
}

fn legacy_rate(flags: u8) -> u32 {
    [5512, 11025, 22050, 44100][usize::from((flags >> 2) & 3)]
}

/// Fills the track's parameters from its configuration record: the
/// kernel's parsers first (SPS size, frame rate, codec string), then the
/// few fields this crate reads itself when those refuse the record.
fn fill_params(t: &mut TrackInfo) {
    use core::fmt::Write;
    if let Ok(p) = arcly_core::media::codec::track_params(t.codec, &t.config) {
        let rate = t.params.sample_rate;
        t.params = p;
        if t.params.sample_rate == 0 {
            t.params.sample_rate = rate;
        }
        return;
    }
    let c = &t.config[..];
    match t.codec {
        CodecId::H264 if c.len() >= 4 => {
            t.params.codec_string.clear();
            let _ = write!(
                t.params.codec_string,
                "avc1.{:02x}{:02x}{:02x}",
                c[1], c[2], c[3]
            );
        }
        CodecId::Aac if c.len() >= 2 => {
            let object = c[0] >> 3;
            let freq = ((c[0] & 0x07) << 1) | (c[1] >> 7);
            const RATES: [u32; 13] = [
                96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
                7350,
            ];
            if let Some(&r) = RATES.get(usize::from(freq)) {
                t.params.sample_rate = r;
                t.params.channels = (c[1] >> 3) & 0x0F;
            }
            t.params.codec_string.clear();
            let _ = write!(t.params.codec_string, "mp4a.40.{object}");
        }
        CodecId::Opus if c.len() >= 16 && &c[..8] == b"OpusHead" => {
            t.params.channels = c[9];
            t.params.sample_rate = 48000;
            t.params.codec_string.clear();
            let _ = t.params.codec_string.push_str("opus");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mp3_gets_a_track_without_configuration() {
        let mut i = Ingest::new(10_000);
        let mut ev = VecDeque::new();
        i.audio(
            0,
            &Bytes::from_static(&[0x2E, 0xFF, 0xFB, 0x90, 0]),
            &mut ev,
        )
        .unwrap();
        i.audio(
            26,
            &Bytes::from_static(&[0x2E, 0xFF, 0xFB, 0x90, 0]),
            &mut ev,
        )
        .unwrap();
        assert_eq!(ev.len(), 3);
        let Some(SessionEvent::Tracks(t)) = ev.pop_front() else {
            panic!("tracks first");
        };
        let a = t.audio().unwrap();
        assert_eq!(a.codec, CodecId::Mp3);
        assert!(a.config.is_empty());
        // Empty media messages carry nothing and are no error.
        i.video(0, &Bytes::new(), &mut ev).unwrap();
        i.audio(0, &Bytes::new(), &mut ev).unwrap();
        assert!(ev.len() == 2);
        // H.264 frames before their sequence header are dropped and counted.
        i.video(
            0,
            &Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
            &mut ev,
        )
        .unwrap();
        assert_eq!(i.dropped, 1);
    }

    #[test]
    fn clock_extends_and_repairs() {
        let mut c = TrackClock::default();
        assert_eq!(c.map(0xFFFF_FF00, 10_000), (0xFFFF_FF00, false));
        assert_eq!(c.map(0x0000_0020, 10_000), (0x1_0000_0020, false));
        // Backwards: repaired to continue by the last step (0x120).
        let (t, d) = c.map(0x0000_0010, 10_000);
        assert!(d);
        assert_eq!(t, 0x1_0000_0020 + 0x120);
        // Continues relative to the repaired time.
        assert_eq!(c.map(0x0000_0030, 10_000), (0x1_0000_0020 + 0x140, false));
        // A forward jump of an hour is repaired as well.
        let (t2, d2) = c.map(0x0000_0030 + 3_600_000, 10_000);
        assert!(d2);
        assert_eq!(t2, 0x1_0000_0020 + 0x140 + 0x20);
    }
}
