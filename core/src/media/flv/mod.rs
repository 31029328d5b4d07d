//! FLV tags made from the kernel's tracks and frames: what RTMP carries in
//! its audio, video and data messages and what an FLV file (or an HTTP-FLV
//! response) holds, built once here for both; and [`FlvFileReader`], which
//! reads the file form back.
//!
//! [`FlvMux`] turns a stream's deliveries into [`Tag`]s: `onMetaData` and
//! the sequence headers for each track set (always before frames), then
//! frames as legacy tags for H.264, AAC and MP3 (FLV specification 10.1,
//! annex E.4.2/E.4.3) and enhanced tags for the rest (veovera Enhanced RTMP:
//! FourCC codecs). Time stamps are rebased so each receiver starts near 0.
//!
//! # A configuration change mid-stream
//!
//! A new track set (the publisher changed its parameter sets, or a publisher
//! came back on a lingering stream) is sent the same way as the first one:
//! `onMetaData`, then a new sequence header, at the time stamp of the last
//! frame sent, so time never goes back; when the video configuration
//! changed, video waits for a key frame. That is how FLV carries a change
//! of decoder configuration, and what ffmpeg's FLV demuxer reads
//! mid-stream.
//!
//! A change of *codec* is sent the same way, since each FLV tag names its
//! codec and nothing else in FLV announces a change; ffmpeg's FLV demuxer
//! does not change the codec of a stream it has opened, so such a player
//! has to play the stream again to pick up the new codec.
//!
//! A tag's head (at most 9 bytes) is kept apart from its payload, which is
//! the frame's own `Bytes`: a receiver writes the two side by side and the
//! payload is never copied.

mod file;

pub use file::{FileTag, FlvFileError, FlvFileReader, TagKind};

use crate::frame::{CodecId, MediaFrame, TrackInfo, TrackSet};
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

/// The largest tag body FLV can carry: its size field (and RTMP's message
/// length) is 24 bits.
pub const MAX_TAG_BODY: usize = 0x00FF_FFFF;

/// The sound format that announces an enhanced audio header.
pub const AUDIO_EX_HEADER: u8 = 9;

/// The few bytes that precede a payload in a tag body.
pub type TagHead = heapless::Vec<u8, 16>;

fn head(bytes: &[u8]) -> TagHead {
    let mut h = TagHead::new();
    // Every head built here is at most 9 bytes.
    let _ = h.extend_from_slice(bytes);
    h
}

/// The FourCC of a codec in enhanced tags.
pub fn fourcc(codec: CodecId) -> &'static [u8; 4] {
    match codec {
        CodecId::H264 => b"avc1",
        CodecId::H265 => b"hvc1",
        CodecId::Av1 => b"av01",
        CodecId::Vp9 => b"vp09",
        CodecId::Aac => b"mp4a",
        CodecId::Opus => b"Opus",
        CodecId::Mp3 => b".mp3",
    }
}

/// The sequence-header tag for a track: its head (the config follows).
/// `None` for codecs without one (MP3).
pub fn sequence_header(track: &TrackInfo) -> Option<TagHead> {
    Some(match track.codec {
        CodecId::H264 => head(&[0x17, 0, 0, 0, 0]),
        CodecId::Aac => head(&[0xAF, 0]),
        CodecId::Mp3 => return None,
        c if c.is_video() => {
            let mut h = head(&[0x80 | (1 << 4)]);
            let _ = h.extend_from_slice(fourcc(c));
            h
        }
        c => {
            let mut h = head(&[AUDIO_EX_HEADER << 4]);
            let _ = h.extend_from_slice(fourcc(c));
            h
        }
    })
}

/// The head of a frame's tag: legacy for H.264, AAC and MP3, enhanced for
/// the rest. `cts` is the composition offset in milliseconds.
pub fn frame_head(frame: &MediaFrame, cts: i32) -> TagHead {
    let cts_bytes = cts.clamp(-0x80_0000, 0x7F_FFFF).to_be_bytes();
    let key = frame.is_key();
    match frame.codec {
        CodecId::H264 => head(&[
            if key { 0x17 } else { 0x27 },
            1,
            cts_bytes[1],
            cts_bytes[2],
            cts_bytes[3],
        ]),
        CodecId::Aac => head(&[0xAF, 1]),
        CodecId::Mp3 => head(&[0x2F]),
        CodecId::H265 => {
            let ft = if key { 1u8 } else { 2 };
            let pkt = if cts == 0 { 3 } else { 1 };
            let mut h = head(&[0x80 | (ft << 4) | pkt]);
            let _ = h.extend_from_slice(b"hvc1");
            if pkt == 1 {
                let _ = h.extend_from_slice(&cts_bytes[1..]);
            }
            h
        }
        c if c.is_video() => {
            let ft = if key { 1u8 } else { 2 };
            let mut h = head(&[0x80 | (ft << 4) | 1]);
            let _ = h.extend_from_slice(fourcc(c));
            h
        }
        c => {
            let mut h = head(&[(AUDIO_EX_HEADER << 4) | 1]);
            let _ = h.extend_from_slice(fourcc(c));
            h
        }
    }
}

/// The `videocodecid` / `audiocodecid` metadata value of a codec: the FLV id
/// for legacy codecs, the FourCC as a number for enhanced ones.
fn codec_number(c: CodecId) -> f64 {
    match c {
        CodecId::H264 => 7.0,
        CodecId::Aac => 10.0,
        CodecId::Mp3 => 2.0,
        c => f64::from(u32::from_be_bytes(*fourcc(c))),
    }
}

/// The properties of `onMetaData` for a track set, in the order they are
/// sent.
pub fn metadata_fields(tracks: &TrackSet) -> Vec<(&'static str, f64)> {
    let mut props = Vec::new();
    if let Some(v) = tracks.video() {
        if v.params.width > 0 {
            props.push(("width", f64::from(v.params.width)));
            props.push(("height", f64::from(v.params.height)));
        }
        props.push(("videocodecid", codec_number(v.codec)));
    }
    if let Some(a) = tracks.audio() {
        props.push(("audiocodecid", codec_number(a.codec)));
        if a.params.sample_rate > 0 {
            props.push(("audiosamplerate", f64::from(a.params.sample_rate)));
        }
        if a.params.channels > 0 {
            props.push(("audiochannels", f64::from(a.params.channels)));
        }
    }
    props
}

// AMF0 markers (AMF0 specification, 2.1).
const AMF0_NUMBER: u8 = 0x00;
const AMF0_STRING: u8 = 0x02;
const AMF0_ECMA_ARRAY: u8 = 0x08;

fn amf0_utf8(out: &mut BytesMut, s: &str) {
    // Every name written here is a short constant.
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// The body of the script tag (an AMF0 data message) describing `tracks`:
/// `onMetaData` and an ECMA array of [`metadata_fields`], prefixed with
/// `@setDataFrame` when `set_data_frame` (what a publisher sends).
pub fn metadata_script(tracks: &TrackSet, set_data_frame: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    if set_data_frame {
        out.put_u8(AMF0_STRING);
        amf0_utf8(&mut out, "@setDataFrame");
    }
    out.put_u8(AMF0_STRING);
    amf0_utf8(&mut out, "onMetaData");
    let props = metadata_fields(tracks);
    out.put_u8(AMF0_ECMA_ARRAY);
    out.put_u32(props.len() as u32);
    for (name, value) in props {
        amf0_utf8(&mut out, name);
        out.put_u8(AMF0_NUMBER);
        out.put_f64(value);
    }
    // The object end: an empty name and marker 9.
    out.put_slice(&[0, 0, 9]);
    out.freeze()
}

/// An FLV tag's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagType {
    /// Audio (8).
    Audio,
    /// Video (9).
    Video,
    /// Script data (18).
    Script,
}

impl TagType {
    /// Its number in a tag header (and RTMP's message type id).
    pub fn id(self) -> u8 {
        match self {
            TagType::Audio => 8,
            TagType::Video => 9,
            TagType::Script => 18,
        }
    }
}

/// One tag made by [`FlvMux`]: its body is `head` followed by `payload`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// What it carries.
    pub kind: TagType,
    /// Its time stamp in milliseconds (RTMP's 32-bit clock).
    pub timestamp: u32,
    /// The bytes before the payload (empty for a script tag).
    pub head: TagHead,
    /// The frame's payload, a track's configuration or the script: shared,
    /// never copied.
    pub payload: Bytes,
}

impl Tag {
    /// The body's length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The muxing state of one outgoing FLV stream (an RTMP player or
/// publisher, an HTTP-FLV response).
#[derive(Debug, Default)]
pub struct FlvMux {
    base: Option<i64>,
    last_ts: u32,
    // Shared with the bus: a receiver holds a pointer, not a copy.
    tracks: Option<Arc<TrackSet>>,
    /// After a pause or a change of video configuration: skip video until
    /// a key frame.
    pub need_key: bool,
    /// Frames sent.
    pub frames: u64,
}

impl FlvMux {
    /// A muxer that has sent nothing.
    pub fn new() -> Self {
        FlvMux::default()
    }

    /// The time stamp of the last frame sent.
    pub fn last_timestamp(&self) -> u32 {
        self.last_ts
    }

    /// The tracks being sent, once known.
    pub fn track_set(&self) -> Option<&Arc<TrackSet>> {
        self.tracks.as_ref()
    }

    /// The metadata and sequence headers for `tracks` (see the module docs
    /// for a change mid-stream), handed to `emit` in order.
    /// `set_data_frame` prefixes the metadata with `@setDataFrame`.
    pub fn tracks(
        &mut self,
        tracks: &Arc<TrackSet>,
        set_data_frame: bool,
        mut emit: impl FnMut(Tag),
    ) {
        emit(Tag {
            kind: TagType::Script,
            timestamp: self.last_ts,
            head: TagHead::new(),
            payload: metadata_script(tracks, set_data_frame),
        });
        // FLV carries one video and one audio track: the first of each.
        for t in [tracks.video(), tracks.audio()].into_iter().flatten() {
            if let Some(head) = sequence_header(t) {
                emit(Tag {
                    kind: if t.codec.is_video() {
                        TagType::Video
                    } else {
                        TagType::Audio
                    },
                    timestamp: self.last_ts,
                    head,
                    payload: t.config.clone(),
                });
            }
        }
        let video_changed = match (&self.tracks, tracks.video()) {
            (Some(old), Some(new)) => old
                .video()
                .is_none_or(|v| v.codec != new.codec || v.config != new.config),
            _ => false,
        };
        if video_changed && self.frames > 0 {
            // A decoder given a new configuration starts again at a key frame.
            self.need_key = true;
        }
        self.tracks = Some(Arc::clone(tracks));
    }

    /// The tag of a frame, or `None` when it is not sent (no tracks yet,
    /// a track FLV does not carry, video waiting for a key frame, audio
    /// from before the first frame).
    pub fn frame(&mut self, f: &MediaFrame) -> Option<Tag> {
        let tracks = self.tracks.as_ref()?;
        let carried = if f.codec.is_video() {
            tracks.video()
        } else {
            tracks.audio()
        };
        if carried.map(|t| t.id) != Some(f.track) {
            return None;
        }
        if self.need_key && f.codec.is_video() {
            if !f.is_key() {
                return None;
            }
            self.need_key = false;
        }
        let dts = f.dts.as_millis();
        let base = *self.base.get_or_insert(dts);
        // Audio packed with the first key frame may begin a little before
        // it (an RTP sender packs several AAC frames into a packet): it
        // would go out at 0 beside the frame that is really at 0, and
        // players take two frames at one time as an error. It is from
        // before the play's start; drop it.
        if f.codec.is_audio() && dts < base && base - dts <= 1_000 {
            return None;
        }
        // FLV's clock is 32 bits and wraps; truncation is the format's rule.
        let ts = (dts - base).max(0) as u32;
        let cts = i32::try_from(f.pts.as_millis() - dts).unwrap_or(0);
        let head = frame_head(f, cts);
        if head.len() + f.payload.len() > MAX_TAG_BODY {
            // A tag's size field is 24 bits: a frame past it cannot be sent.
            return None;
        }
        self.last_ts = ts;
        self.frames += 1;
        Some(Tag {
            kind: if f.codec.is_video() {
                TagType::Video
            } else {
                TagType::Audio
            },
            timestamp: ts,
            head,
            payload: f.payload.clone(),
        })
    }
}

/// The FLV file header (Adobe FLV file format, E.2) with the first
/// `PreviousTagSize0`: 13 bytes.
pub fn file_header(video: bool, audio: bool) -> [u8; 13] {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// A tag's header in a file (E.4.1): type, body size, time stamp with its
/// extension byte, stream id 0; then the head. What follows is the payload
/// and then [`previous_tag_size`].
pub fn file_tag_head(tag: &Tag) -> heapless::Vec<u8, 32> {
    let mut h = heapless::Vec::new();
    let size = (tag.len() as u32).to_be_bytes();
    let ts = tag.timestamp.to_be_bytes();
    let _ = h.extend_from_slice(&[
        tag.kind.id(),
        size[1],
        size[2],
        size[3],
        ts[1],
        ts[2],
        ts[3],
        ts[0],
        0,
        0,
        0,
    ]);
    let _ = h.extend_from_slice(&tag.head);
    h
}

/// The `PreviousTagSize` after `tag` in a file: its header and body.
pub fn previous_tag_size(tag: &Tag) -> [u8; 4] {
    (11 + tag.len() as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{TrackId, TrackInfo};
    use crate::time::{MediaTime, Timescale};

    fn set(tracks: &[(u8, CodecId, &'static [u8])]) -> Arc<TrackSet> {
        let mut s = TrackSet::new();
        for &(id, codec, cfg) in tracks {
            s.upsert(TrackInfo::new(
                TrackId(id),
                codec,
                Timescale::MILLIS,
                Bytes::from_static(cfg),
            ))
            .unwrap();
        }
        Arc::new(s)
    }

    fn video(id: u8, codec: CodecId, key: bool, ms: i64) -> MediaFrame {
        MediaFrame::video(
            TrackId(id),
            codec,
            key,
            MediaTime::new(ms * 90, Timescale::MPEG),
            Bytes::from_static(b"x"),
        )
    }

    #[test]
    fn one_video_and_one_audio_track_rebased_to_zero() {
        let mut m = FlvMux::new();
        // A frame before the tracks is not sent.
        assert!(m.frame(&video(0, CodecId::H264, true, 5000)).is_none());
        let mut tags = Vec::new();
        let s = set(&[
            (0, CodecId::H264, b"cfg"),
            (1, CodecId::Aac, b"asc"),
            (2, CodecId::H265, b"cfg"),
        ]);
        m.tracks(&s, false, |t| tags.push(t));
        let kinds: Vec<TagType> = tags.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [TagType::Script, TagType::Video, TagType::Audio]);
        assert_eq!(&tags[1].head[..], &[0x17, 0, 0, 0, 0]);
        assert_eq!(&tags[2].payload[..], b"asc");
        // The second video track is not FLV's.
        assert!(m.frame(&video(2, CodecId::H265, true, 5000)).is_none());
        assert_eq!(
            m.frame(&video(0, CodecId::H264, true, 5000))
                .unwrap()
                .timestamp,
            0
        );
        let t = m.frame(&video(0, CodecId::H264, false, 5040)).unwrap();
        assert_eq!((t.timestamp, &t.head[..2]), (40, &[0x27, 1][..]));
        assert_eq!((m.frames, m.last_timestamp()), (2, 40));
    }

    #[test]
    fn audio_from_just_before_the_first_frame_is_not_sent() {
        let mut m = FlvMux::new();
        m.tracks(
            &set(&[(0, CodecId::H264, b"c"), (1, CodecId::Aac, b"a")]),
            false,
            |_| {},
        );
        let audio = |ms: i64| {
            MediaFrame::audio(
                TrackId(1),
                CodecId::Aac,
                MediaTime::from_millis(ms),
                Bytes::from_static(b"a"),
            )
        };
        let key = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            true,
            MediaTime::from_millis(1000),
            Bytes::from_static(b"k"),
        );
        assert!(m.frame(&key).is_some());
        // Packed with the key frame, from 21 ms before it: not sent.
        assert!(m.frame(&audio(979)).is_none());
        assert_eq!(m.frame(&audio(1021)).unwrap().timestamp, 21);
    }

    #[test]
    fn a_new_video_configuration_waits_for_a_key_frame() {
        let mut m = FlvMux::new();
        let f = |key: bool, ms: i64| {
            MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                key,
                MediaTime::from_millis(ms),
                Bytes::from_static(b"x"),
            )
        };
        m.tracks(&set(&[(0, CodecId::H264, b"one")]), false, |_| {});
        assert!(m.frame(&f(true, 0)).is_some());
        assert!(m.frame(&f(false, 40)).is_some());
        m.tracks(&set(&[(0, CodecId::H264, b"one")]), false, |_| {});
        assert!(!m.need_key);
        let mut ts = Vec::new();
        m.tracks(&set(&[(0, CodecId::H264, b"two")]), false, |t| {
            ts.push(t.timestamp)
        });
        // Sent at the last frame's time: time never goes back.
        assert_eq!(ts, [40, 40]);
        assert!(m.need_key);
        assert!(m.frame(&f(false, 80)).is_none());
        assert_eq!(m.frame(&f(true, 120)).unwrap().timestamp, 120);
        assert!(!m.need_key);
    }

    #[test]
    fn metadata_is_amf0_as_players_read_it() {
        let mut s = TrackSet::new();
        let mut v = TrackInfo::new(TrackId(0), CodecId::H264, Timescale::MILLIS, Bytes::new());
        v.params.width = 320;
        v.params.height = 240;
        s.upsert(v).unwrap();
        let script = metadata_script(&s, true);
        let mut want = vec![2, 0, 13];
        want.extend_from_slice(b"@setDataFrame");
        want.extend_from_slice(&[2, 0, 10]);
        want.extend_from_slice(b"onMetaData");
        want.extend_from_slice(&[8, 0, 0, 0, 3]);
        for (name, value) in [
            ("width", 320.0f64),
            ("height", 240.0),
            ("videocodecid", 7.0),
        ] {
            want.extend_from_slice(&(name.len() as u16).to_be_bytes());
            want.extend_from_slice(name.as_bytes());
            want.push(0);
            want.extend_from_slice(&value.to_be_bytes());
        }
        want.extend_from_slice(&[0, 0, 9]);
        assert_eq!(&script[..], &want[..]);
    }

    #[test]
    fn file_framing() {
        assert_eq!(&file_header(true, true)[..5], b"FLV\x01\x05");
        assert_eq!(file_header(true, false)[4], 1);
        let tag = Tag {
            kind: TagType::Video,
            timestamp: 0x0102_0304,
            head: head(&[0x17, 1, 0, 0, 0]),
            payload: Bytes::from_static(&[0xAB; 300]),
        };
        let h = file_tag_head(&tag);
        // 305 bytes of body; time stamp low 24 bits then the high byte.
        assert_eq!(&h[..11], &[9, 0, 1, 0x31, 2, 3, 4, 1, 0, 0, 0]);
        assert_eq!(&h[11..], &[0x17, 1, 0, 0, 0]);
        assert_eq!(previous_tag_size(&tag), 316u32.to_be_bytes());
    }

    proptest::proptest! {
        /// Whatever frames come, the file form reads back tag by tag: every
        /// size and `PreviousTagSize` agrees, time stamps are the rebased
        /// decode times, and each body is the head then the frame's bytes.
        #[test]
        fn file_tags_read_back(frames in proptest::collection::vec(
            (proptest::bool::ANY, proptest::bool::ANY, 0i64..200, 0usize..700),
            1..60,
        )) {
            let mut m = FlvMux::new();
            let mut file = file_header(true, true).to_vec();
            let mut sent = Vec::new();
            let mut write = |t: Tag, file: &mut Vec<u8>| {
                file.extend_from_slice(&file_tag_head(&t));
                file.extend_from_slice(&t.payload);
                file.extend_from_slice(&previous_tag_size(&t));
                sent.push(t);
            };
            let mut tags = Vec::new();
            m.tracks(&set(&[(0, CodecId::H264, b"v"), (1, CodecId::Opus, b"o")]), false, |t| {
                tags.push(t);
            });
            for t in tags {
                write(t, &mut file);
            }
            let mut dts = 10_000;
            for (is_video, key, step, len) in frames {
                dts += step;
                let payload = Bytes::from(vec![7u8; len]);
                let f = if is_video {
                    MediaFrame::video(TrackId(0), CodecId::H264, key, MediaTime::from_millis(dts), payload)
                } else {
                    MediaFrame::audio(TrackId(1), CodecId::Opus, MediaTime::from_millis(dts), payload)
                };
                if let Some(t) = m.frame(&f) {
                    proptest::prop_assert_eq!(&t.payload, &f.payload);
                    write(t, &mut file);
                }
            }
            let mut at = 13;
            let mut read = 0;
            while at < file.len() {
                let size = u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize;
                let ts = u32::from_be_bytes([file[at + 7], file[at + 4], file[at + 5], file[at + 6]]);
                let t = &sent[read];
                proptest::prop_assert_eq!((file[at], ts, size), (t.kind.id(), t.timestamp, t.len()));
                let body = &file[at + 11..at + 11 + size];
                proptest::prop_assert_eq!(&body[..t.head.len()], &t.head[..]);
                let prev = u32::from_be_bytes(file[at + 11 + size..at + 15 + size].try_into().unwrap());
                proptest::prop_assert_eq!(prev as usize, 11 + size);
                at += 15 + size;
                read += 1;
            }
            proptest::prop_assert_eq!(read, sent.len());
        }
    }

    #[test]
    fn a_frame_past_the_24_bit_size_is_not_sent() {
        let mut m = FlvMux::new();
        m.tracks(&set(&[(0, CodecId::H264, b"v")]), false, |_| {});
        let big = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            true,
            MediaTime::from_millis(0),
            Bytes::from(vec![0u8; MAX_TAG_BODY]),
        );
        assert!(m.frame(&big).is_none());
        assert_eq!(m.frames, 0);
        let fits = MediaFrame {
            payload: Bytes::from(vec![0u8; MAX_TAG_BODY - 5]),
            ..big
        };
        assert_eq!(m.frame(&fits).unwrap().len(), MAX_TAG_BODY);
    }

    #[test]
    fn enhanced_heads_name_the_fourcc() {
        let f = video(0, CodecId::Av1, true, 0);
        assert_eq!(&frame_head(&f, 0)[..], b"\x91av01");
        let hevc = video(0, CodecId::H265, false, 0);
        assert_eq!(&frame_head(&hevc, 0)[..], b"\xA3hvc1");
        assert_eq!(&frame_head(&hevc, 33)[..], b"\xA1hvc1\x00\x00\x21");
    }
}
