//! FLV audio and video tag bodies as RTMP carries them (FLV specification
//! 10.1, annex E.4.2/E.4.3) and their enhanced form (veovera Enhanced RTMP
//! v1/v2: `IsExHeader`, FourCC codecs, packet types SequenceStart,
//! CodedFrames, CodedFramesX, SequenceEnd, Metadata, ModEx).
//!
//! Parsing cuts the payload out of the message body as a `Bytes` slice; the
//! tag headers made for players are at most a few bytes and written next to
//! the frame's payload, never concatenated with it.

use crate::error::{Result, RtmpError};
use arcly_core::frame::CodecId;
use bytes::Bytes;

// The tags made for players are built in core, shared with HTTP-FLV.
pub use arcly_core::media::flv::{fourcc, frame_head, sequence_header, TagHead, AUDIO_EX_HEADER};

/// The legacy video codec id of H.264 (AVC).
pub const VIDEO_AVC: u8 = 7;
/// A legacy codec id some servers use for H.265 (not in the FLV spec).
pub const VIDEO_HEVC_LEGACY: u8 = 12;
/// The legacy sound format of AAC.
pub const AUDIO_AAC: u8 = 10;
/// The legacy sound format of MP3.
pub const AUDIO_MP3: u8 = 2;
/// The legacy sound format of 8 kHz MP3.
pub const AUDIO_MP3_8K: u8 = 14;

/// A video tag's frame type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFrameType {
    /// A key frame (1) or generated key frame (4).
    Key,
    /// An inter frame (2) or disposable inter frame (3).
    Inter,
    /// Video info / command frame (5): no media.
    Command,
    /// A reserved value.
    Reserved(u8),
}

impl VideoFrameType {
    fn from_bits(v: u8) -> Self {
        match v {
            1 | 4 => VideoFrameType::Key,
            2 | 3 => VideoFrameType::Inter,
            5 => VideoFrameType::Command,
            r => VideoFrameType::Reserved(r),
        }
    }
}

/// What a tag carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagPacket {
    /// The decoder configuration (avcC, hvcC, av1C, vpcC, ASC, OpusHead).
    SequenceStart(Bytes),
    /// One coded frame with its composition time offset in milliseconds.
    Frame {
        /// `pts - dts` in milliseconds (video; 0 for audio).
        cts: i32,
        /// The payload, cut from the message.
        data: Bytes,
    },
    /// The end of the sequence.
    SequenceEnd,
    /// Something carried for information only (enhanced video metadata,
    /// command frames, multitrack packets): no media event.
    Ignored,
}

/// A parsed FLV audio or video tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvTag {
    /// The codec; `None` for codecs the kernel does not carry.
    pub codec: Option<CodecId>,
    /// Whether the enhanced header was used.
    pub enhanced: bool,
    /// Video: the frame type; audio: always `Inter`.
    pub frame_type: VideoFrameType,
    /// Audio: the legacy sound rate/size/type bits (low nibble of byte 0).
    pub sound_flags: u8,
    /// What it carries.
    pub packet: TagPacket,
}

fn bad(kind: &'static str, what: &'static str) -> RtmpError {
    RtmpError::InvalidTag { kind, what }
}

fn si24(b: &[u8]) -> i32 {
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

fn video_fourcc(f: &[u8]) -> Option<CodecId> {
    match f {
        b"avc1" => Some(CodecId::H264),
        b"hvc1" => Some(CodecId::H265),
        b"av01" => Some(CodecId::Av1),
        b"vp09" => Some(CodecId::Vp9),
        _ => None,
    }
}

fn audio_fourcc(f: &[u8]) -> Option<CodecId> {
    match f {
        b"Opus" => Some(CodecId::Opus),
        b"mp4a" => Some(CodecId::Aac),
        b".mp3" => Some(CodecId::Mp3),
        _ => None,
    }
}

/// Skips ModEx prefixes (enhanced RTMP v2): returns the real packet type
/// and the offset after the modifiers.
fn skip_mod_ex(b: &[u8], mut pos: usize, kind: &'static str) -> Result<(u8, usize)> {
    loop {
        let size_byte = *b.get(pos).ok_or_else(|| bad(kind, "truncated ModEx"))?;
        pos += 1;
        let mut size = usize::from(size_byte) + 1;
        if size == 256 {
            let s = b
                .get(pos..pos + 2)
                .ok_or_else(|| bad(kind, "truncated ModEx"))?;
            size = usize::from(u16::from_be_bytes([s[0], s[1]])) + 1;
            pos += 2;
        }
        pos = pos
            .checked_add(size)
            .filter(|&p| p < b.len())
            .ok_or_else(|| bad(kind, "truncated ModEx"))?;
        let next = b[pos] & 0x0F;
        pos += 1;
        if next != 7 {
            return Ok((next, pos));
        }
    }
}

/// Drops a leading AV1 temporal delimiter OBU (the canonical form has none).
fn strip_temporal_delimiter(data: Bytes) -> Bytes {
    let Some(&h) = data.first() else {
        return data;
    };
    let obu_type = (h >> 3) & 0x0F;
    let has_ext = h & 0x04 != 0;
    let has_size = h & 0x02 != 0;
    if obu_type != 2 || !has_size {
        return data;
    }
    let mut pos = 1 + usize::from(has_ext);
    let mut size = 0usize;
    for i in 0..8 {
        let Some(&b) = data.get(pos) else {
            return data;
        };
        pos += 1;
        size |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    match pos.checked_add(size) {
        Some(end) if end <= data.len() => data.slice(end..),
        _ => data,
    }
}

/// Parses a video message body.
pub fn parse_video(body: &Bytes) -> Result<FlvTag> {
    const K: &str = "video";
    let b = &body[..];
    let b0 = *b.first().ok_or_else(|| bad(K, "empty"))?;
    if b0 & 0x80 != 0 {
        let frame_type = VideoFrameType::from_bits((b0 >> 4) & 0x07);
        let mut pkt = b0 & 0x0F;
        let mut pos = 1;
        if pkt == 7 {
            let (p, np) = skip_mod_ex(b, pos, K)?;
            pkt = p;
            pos = np;
        }
        if frame_type == VideoFrameType::Command && pkt != 4 {
            return Ok(FlvTag {
                codec: None,
                enhanced: true,
                frame_type,
                sound_flags: 0,
                packet: TagPacket::Ignored,
            });
        }
        let f = b
            .get(pos..pos + 4)
            .ok_or_else(|| bad(K, "truncated FourCC"))?;
        let codec = video_fourcc(f);
        pos += 4;
        let packet = match pkt {
            0 => TagPacket::SequenceStart(body.slice(pos..)),
            1 | 3 => {
                let mut cts = 0;
                if pkt == 1 && matches!(codec, Some(CodecId::H264 | CodecId::H265)) {
                    let c = b.get(pos..pos + 3).ok_or_else(|| bad(K, "truncated CTS"))?;
                    cts = si24(c);
                    pos += 3;
                }
                let mut data = body.slice(pos..);
                if codec == Some(CodecId::Av1) {
                    data = strip_temporal_delimiter(data);
                }
                TagPacket::Frame { cts, data }
            }
            2 => TagPacket::SequenceEnd,
            // Metadata (4), MPEG2TSSequenceStart (5), Multitrack (6), reserved.
            _ => TagPacket::Ignored,
        };
        return Ok(FlvTag {
            codec,
            enhanced: true,
            frame_type,
            sound_flags: 0,
            packet,
        });
    }
    let frame_type = VideoFrameType::from_bits(b0 >> 4);
    let codec_id = b0 & 0x0F;
    let codec = match codec_id {
        VIDEO_AVC => Some(CodecId::H264),
        VIDEO_HEVC_LEGACY => Some(CodecId::H265),
        _ => None,
    };
    if frame_type == VideoFrameType::Command || codec.is_none() {
        return Ok(FlvTag {
            codec,
            enhanced: false,
            frame_type,
            sound_flags: 0,
            packet: TagPacket::Ignored,
        });
    }
    let h = b.get(1..5).ok_or_else(|| bad(K, "truncated AVC header"))?;
    let cts = si24(&h[1..4]);
    let packet = match h[0] {
        0 => TagPacket::SequenceStart(body.slice(5..)),
        1 => TagPacket::Frame {
            cts,
            data: body.slice(5..),
        },
        2 => TagPacket::SequenceEnd,
        _ => return Err(bad(K, "unknown AVC packet type")),
    };
    Ok(FlvTag {
        codec,
        enhanced: false,
        frame_type,
        sound_flags: 0,
        packet,
    })
}

/// Parses an audio message body.
pub fn parse_audio(body: &Bytes) -> Result<FlvTag> {
    const K: &str = "audio";
    let b = &body[..];
    let b0 = *b.first().ok_or_else(|| bad(K, "empty"))?;
    let format = b0 >> 4;
    if format == AUDIO_EX_HEADER {
        let mut pkt = b0 & 0x0F;
        let mut pos = 1;
        if pkt == 7 {
            let (p, np) = skip_mod_ex(b, pos, K)?;
            pkt = p;
            pos = np;
        }
        let f = b
            .get(pos..pos + 4)
            .ok_or_else(|| bad(K, "truncated FourCC"))?;
        let codec = audio_fourcc(f);
        pos += 4;
        let packet = match pkt {
            0 => TagPacket::SequenceStart(body.slice(pos..)),
            1 => TagPacket::Frame {
                cts: 0,
                data: body.slice(pos..),
            },
            2 => TagPacket::SequenceEnd,
            // MultichannelConfig (4), Multitrack (5), reserved.
            _ => TagPacket::Ignored,
        };
        return Ok(FlvTag {
            codec,
            enhanced: true,
            frame_type: VideoFrameType::Inter,
            sound_flags: 0,
            packet,
        });
    }
    let (codec, packet) = match format {
        AUDIO_AAC => {
            let t = *b.get(1).ok_or_else(|| bad(K, "truncated AAC header"))?;
            let packet = match t {
                0 => TagPacket::SequenceStart(body.slice(2..)),
                1 => TagPacket::Frame {
                    cts: 0,
                    data: body.slice(2..),
                },
                _ => return Err(bad(K, "unknown AAC packet type")),
            };
            (Some(CodecId::Aac), packet)
        }
        AUDIO_MP3 | AUDIO_MP3_8K => (
            Some(CodecId::Mp3),
            TagPacket::Frame {
                cts: 0,
                data: body.slice(1..),
            },
        ),
        _ => (None, TagPacket::Ignored),
    };
    Ok(FlvTag {
        codec,
        enhanced: false,
        frame_type: VideoFrameType::Inter,
        sound_flags: b0 & 0x0F,
        packet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_core::frame::{MediaFrame, TrackId, TrackInfo};
    use arcly_core::time::{MediaTime, Timescale};

    #[test]
    fn legacy_avc_frame_with_negative_cts() {
        let body = Bytes::from_static(&[0x27, 1, 0xFF, 0xFF, 0xD8, 0, 0, 0, 1, 0x41]);
        let t = parse_video(&body).unwrap();
        assert_eq!(t.codec, Some(CodecId::H264));
        assert_eq!(t.frame_type, VideoFrameType::Inter);
        assert_eq!(
            t.packet,
            TagPacket::Frame {
                cts: -40,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41])
            }
        );
    }

    #[test]
    fn enhanced_round_trip_through_heads() {
        for codec in [CodecId::H264, CodecId::H265, CodecId::Av1, CodecId::Vp9] {
            let f = MediaFrame::video(
                TrackId(0),
                codec,
                true,
                MediaTime::from_millis(0),
                Bytes::from_static(b"\x00\x00\x00\x01\x65"),
            );
            for cts in [0, 40] {
                let cts = if matches!(codec, CodecId::H264 | CodecId::H265) {
                    cts
                } else {
                    0
                };
                let h = frame_head(&f, cts);
                let mut body = h.to_vec();
                body.extend_from_slice(&f.payload);
                let t = parse_video(&Bytes::from(body)).unwrap();
                assert_eq!(t.codec, Some(codec));
                assert_eq!(t.frame_type, VideoFrameType::Key);
                assert_eq!(
                    t.packet,
                    TagPacket::Frame {
                        cts,
                        data: f.payload.clone()
                    }
                );
            }
            let tr = TrackInfo::new(
                TrackId(0),
                codec,
                Timescale::MILLIS,
                Bytes::from_static(b"cfg"),
            );
            let mut body = sequence_header(&tr).unwrap().to_vec();
            body.extend_from_slice(b"cfg");
            let t = parse_video(&Bytes::from(body)).unwrap();
            assert_eq!(
                t.packet,
                TagPacket::SequenceStart(Bytes::from_static(b"cfg"))
            );
        }
        for codec in [CodecId::Aac, CodecId::Opus] {
            let tr = TrackInfo::new(
                TrackId(1),
                codec,
                Timescale::MILLIS,
                Bytes::from_static(b"cfg"),
            );
            let mut body = sequence_header(&tr).unwrap().to_vec();
            body.extend_from_slice(b"cfg");
            let t = parse_audio(&Bytes::from(body)).unwrap();
            assert_eq!(t.codec, Some(codec));
            assert_eq!(
                t.packet,
                TagPacket::SequenceStart(Bytes::from_static(b"cfg"))
            );
        }
    }

    #[test]
    fn mod_ex_is_skipped_and_truncation_is_an_error() {
        // Enhanced video, packet type ModEx, 1 byte of modifier, then
        // CodedFramesX for av01.
        let body =
            Bytes::from_static(&[0x97, 0x00, 0xAA, 0x03, b'a', b'v', b'0', b'1', 0x0A, 0x00]);
        let t = parse_video(&body).unwrap();
        assert_eq!(t.codec, Some(CodecId::Av1));
        assert!(matches!(t.packet, TagPacket::Frame { .. }));
        assert!(parse_video(&Bytes::from_static(&[0x97, 0x05])).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x17, 0])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xAF])).is_err());
        assert!(parse_audio(&Bytes::new()).is_err());
    }

    #[test]
    fn mp3_legacy_and_enhanced() {
        let t = parse_audio(&Bytes::from_static(&[0x2F, 0xFF, 0xFB, 0x90])).unwrap();
        assert_eq!(t.codec, Some(CodecId::Mp3));
        assert_eq!(t.sound_flags, 0x0F);
        assert_eq!(
            t.packet,
            TagPacket::Frame {
                cts: 0,
                data: Bytes::from_static(&[0xFF, 0xFB, 0x90])
            }
        );
        let t = parse_audio(&Bytes::from_static(b"\x91.mp3\xFF\xFB")).unwrap();
        assert_eq!(t.codec, Some(CodecId::Mp3));
        assert!(t.enhanced);
        assert_eq!(
            t.packet,
            TagPacket::Frame {
                cts: 0,
                data: Bytes::from_static(&[0xFF, 0xFB])
            }
        );
        // Codecs the kernel does not carry are recognised and skipped.
        let t = parse_audio(&Bytes::from_static(&[0x72, 1, 2])).unwrap();
        assert_eq!((t.codec, t.packet), (None, TagPacket::Ignored));
        let t = parse_video(&Bytes::from_static(&[0x12, 1, 2])).unwrap();
        assert_eq!((t.codec, t.packet), (None, TagPacket::Ignored));
    }

    #[test]
    fn av1_temporal_delimiter_is_dropped() {
        let d = strip_temporal_delimiter(Bytes::from_static(&[0x12, 0x00, 0x0A, 0x01, 0x00]));
        assert_eq!(&d[..], &[0x0A, 0x01, 0x00]);
    }
}
