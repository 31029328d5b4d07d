//! Frames and tracks: the one form media takes inside the kernel.
//!
//! Every ingest (RTMP, RTSP, SRT, WebRTC, a file) produces the same
//! [`MediaFrame`]s, and every output consumes them, so a frame published over
//! one protocol is byte-for-byte the frame any other protocol would have
//! published. The canonical payload of each codec:
//!
//! | codec | payload of a [`MediaFrame`] | [`TrackInfo::config`] |
//! |---|---|---|
//! | H.264 | one access unit, NAL units each prefixed by a 4-byte big-endian length (ISO/IEC 14496-15 sample form) | `AVCDecoderConfigurationRecord` (avcC) |
//! | H.265 | one access unit, 4-byte length-prefixed NAL units | `HEVCDecoderConfigurationRecord` (hvcC) |
//! | AV1 | one temporal unit in the low-overhead OBU format, no temporal delimiter OBU (AV1-ISOBMFF sample form) | `AV1CodecConfigurationRecord` (av1C) |
//! | VP9 | one frame (superframes kept whole) | `VPCodecConfigurationRecord` (vpcC) |
//! | AAC | one raw access unit, never ADTS | `AudioSpecificConfig` |
//! | Opus | one Opus packet | `OpusHead` (RFC 7845 §5.1) |
//! | MP3 | one MPEG audio frame with its header | empty |
//!
//! Parameter sets (SPS/PPS/VPS, the AAC config, the AV1 sequence header) travel
//! as track configuration, which every subscriber receives before the first
//! frame that needs it and again whenever it changes.

use crate::time::{MediaTime, Timescale};
use bytes::Bytes;

/// The codec of a track or a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecId {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
    /// AV1.
    Av1,
    /// VP9.
    Vp9,
    /// AAC (any object type).
    Aac,
    /// Opus.
    Opus,
    /// MPEG-1/2 audio layer III.
    Mp3,
}

impl CodecId {
    /// Whether this codec carries video.
    pub const fn is_video(self) -> bool {
        matches!(
            self,
            CodecId::H264 | CodecId::H265 | CodecId::Av1 | CodecId::Vp9
        )
    }

    /// Whether this codec carries audio.
    pub const fn is_audio(self) -> bool {
        !self.is_video()
    }

    /// The codec's short name, as logs and the stats API print it.
    pub const fn name(self) -> &'static str {
        match self {
            CodecId::H264 => "h264",
            CodecId::H265 => "h265",
            CodecId::Av1 => "av1",
            CodecId::Vp9 => "vp9",
            CodecId::Aac => "aac",
            CodecId::Opus => "opus",
            CodecId::Mp3 => "mp3",
        }
    }
}

/// What a frame is, as far as starting to decode is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A video frame a decoder can start at (IDR, IRAP, AV1 key frame).
    Key,
    /// A video frame that depends on earlier frames.
    Delta,
    /// An audio frame (every audio frame is decodable on its own once the
    /// track configuration is known).
    Audio,
}

/// A track within a stream. Track ids are small and chosen by the ingest
/// (by convention 0 is the first video track and 1 the first audio track).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u8);

/// One coded frame of one track.
///
/// Cloning a frame costs a reference count on its payload, never a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaFrame {
    /// The track this frame belongs to.
    pub track: TrackId,
    /// The codec, the same as the track's.
    pub codec: CodecId,
    /// Key, delta or audio.
    pub kind: FrameKind,
    /// Presentation time.
    pub pts: MediaTime,
    /// Decode time (equal to `pts` without B-frames).
    pub dts: MediaTime,
    /// The payload in the codec's canonical form (see the module docs).
    pub payload: Bytes,
    /// Time stamps do not continue from the track's previous frame (the
    /// publisher restarted, or its clock jumped and was repaired).
    pub discontinuity: bool,
    /// The frame as one protocol writes it for every receiver (RTMP's
    /// chunked message body), built by the first receiver that needs it and
    /// shared by the rest. Not part of the frame's identity: a clone starts
    /// empty and comparisons ignore it.
    pub wire: WireCache,
}

/// A write-once cell for a frame's bytes on the wire, in the one form
/// (named by an opaque `format` number that the writing protocol chooses)
/// that every receiver of a stream shares. Reading it is one atomic load;
/// the first receiver to build the form stores it, and a receiver that
/// built it at the same moment keeps its own copy for itself and drops it.
/// Without `std` nothing is stored and every receiver builds its own.
#[derive(Default)]
pub struct WireCache {
    #[cfg(feature = "std")]
    cell: std::sync::OnceLock<alloc::boxed::Box<(u64, Bytes)>>,
}

impl WireCache {
    /// The stored bytes, if they are in `format`.
    pub fn get(&self, format: u64) -> Option<&Bytes> {
        #[cfg(feature = "std")]
        {
            self.cell.get().filter(|w| w.0 == format).map(|w| &w.1)
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = format;
            None
        }
    }

    /// Stores `wire` in `format` unless something is stored already;
    /// whether it was.
    pub fn set(&self, format: u64, wire: Bytes) -> bool {
        #[cfg(feature = "std")]
        {
            self.cell
                .set(alloc::boxed::Box::new((format, wire)))
                .is_ok()
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = (format, wire);
            false
        }
    }
}

impl Clone for WireCache {
    /// Empty: the copy is built again if a receiver of the clone needs it.
    fn clone(&self) -> Self {
        WireCache::default()
    }
}

impl PartialEq for WireCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WireCache {}

impl core::fmt::Debug for WireCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WireCache")
    }
}

impl MediaFrame {
    /// A video frame with pts = dts.
    pub fn video(track: TrackId, codec: CodecId, key: bool, t: MediaTime, payload: Bytes) -> Self {
        MediaFrame {
            track,
            codec,
            kind: if key {
                FrameKind::Key
            } else {
                FrameKind::Delta
            },
            pts: t,
            dts: t,
            payload,
            discontinuity: false,
            wire: WireCache::default(),
        }
    }

    /// An audio frame.
    pub fn audio(track: TrackId, codec: CodecId, t: MediaTime, payload: Bytes) -> Self {
        MediaFrame {
            track,
            codec,
            kind: FrameKind::Audio,
            pts: t,
            dts: t,
            payload,
            discontinuity: false,
            wire: WireCache::default(),
        }
    }

    /// Whether this is a video key frame.
    pub fn is_key(&self) -> bool {
        self.kind == FrameKind::Key
    }

    /// The composition offset `pts - dts`, in the dts timescale.
    pub fn composition_offset(&self) -> i64 {
        self.pts
            .rescale(self.dts.timescale)
            .ticks
            .saturating_sub(self.dts.ticks)
    }
}

/// Per-track parameters parsed from the configuration, for players, stats and
/// playlists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackParams {
    /// Coded width in pixels (video), 0 when unknown.
    pub width: u32,
    /// Coded height in pixels (video), 0 when unknown.
    pub height: u32,
    /// Frames per second times 1000 (video), 0 when unknown.
    pub frame_rate_milli: u32,
    /// Sample rate in Hz (audio), 0 when unknown.
    pub sample_rate: u32,
    /// Channel count (audio), 0 when unknown.
    pub channels: u8,
    /// RFC 6381 codec string computed from the bitstream (e.g.
    /// `avc1.64001f`), empty when not known yet.
    pub codec_string: heapless::String<32>,
}

/// One track of a stream and the configuration a decoder needs before its
/// first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// The track's id, as its frames carry it.
    pub id: TrackId,
    /// Its codec.
    pub codec: CodecId,
    /// The timescale its frames' time stamps use.
    pub timescale: Timescale,
    /// The codec's decoder configuration record (see the module docs).
    pub config: Bytes,
    /// What was parsed from the configuration.
    pub params: TrackParams,
}

impl TrackInfo {
    /// A track with no parsed parameters.
    pub fn new(id: TrackId, codec: CodecId, timescale: Timescale, config: Bytes) -> Self {
        TrackInfo {
            id,
            codec,
            timescale,
            config,
            params: TrackParams::default(),
        }
    }
}

/// At most this many tracks in one stream.
pub const MAX_TRACKS: usize = 8;

/// The tracks of a stream: what a subscriber receives before media, and again
/// whenever the publisher changes a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackSet {
    tracks: heapless::Vec<TrackInfo, MAX_TRACKS>,
}

/// A stream already has [`MAX_TRACKS`] tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a stream has at most {MAX_TRACKS} tracks")]
pub struct TooManyTracks;

impl TrackSet {
    /// No tracks.
    pub const fn new() -> Self {
        TrackSet {
            tracks: heapless::Vec::new(),
        }
    }

    /// Adds a track or replaces the one with the same id.
    pub fn upsert(&mut self, track: TrackInfo) -> Result<(), TooManyTracks> {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == track.id) {
            *t = track;
            return Ok(());
        }
        self.tracks.push(track).map_err(|_| TooManyTracks)?;
        self.tracks.sort_unstable_by_key(|t| t.id);
        Ok(())
    }

    /// The track with this id.
    pub fn get(&self, id: TrackId) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// All tracks, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &TrackInfo> {
        self.tracks.iter()
    }

    /// Number of tracks.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether there are no tracks.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Whether any track is video.
    pub fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.codec.is_video())
    }

    /// The first video track.
    pub fn video(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.codec.is_video())
    }

    /// The first audio track.
    pub fn audio(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.codec.is_audio())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(id: u8, codec: CodecId) -> TrackInfo {
        TrackInfo::new(TrackId(id), codec, Timescale::MILLIS, Bytes::new())
    }

    #[test]
    fn track_set_upserts_sorted_and_bounded() {
        let mut s = TrackSet::new();
        s.upsert(track(1, CodecId::Aac)).unwrap();
        s.upsert(track(0, CodecId::H264)).unwrap();
        s.upsert(track(0, CodecId::H265)).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.video().unwrap().codec, CodecId::H265);
        assert_eq!(s.iter().next().unwrap().id, TrackId(0));
        for i in 2..MAX_TRACKS as u8 {
            s.upsert(track(i, CodecId::Opus)).unwrap();
        }
        assert_eq!(s.upsert(track(99, CodecId::Opus)), Err(TooManyTracks));
    }

    #[test]
    fn composition_offset_across_timescales() {
        let mut f = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            false,
            MediaTime::from_millis(100),
            Bytes::new(),
        );
        f.pts = MediaTime::new(90 * 140, Timescale::MPEG);
        assert_eq!(f.composition_offset(), 40);
    }
}
