//! VP9: the uncompressed frame header (VP9 Bitstream & Decoding Process
//! Specification v0.6 §6.2: frame marker, profile, frame type, `color_config`
//! and `frame_size` of key frames), superframe index (Annex B), the
//! `VPCodecConfigurationRecord` (VP Codec ISO Media File Format Binding §2.2)
//! and the codec string `vp09.PP.LL.DD` (same document, §4).

use super::bits::BitReader;
use super::{push_dec, push_str, CodecError};
use crate::frame::TrackParams;
use bytes::{BufMut, Bytes, BytesMut};

/// What the uncompressed header of a frame says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameHeader {
    /// `Profile` (0..=3).
    pub profile: u8,
    /// `show_existing_frame`.
    pub show_existing_frame: bool,
    /// `frame_type == KEY_FRAME`.
    pub key: bool,
    /// For key frames: bit depth, `color_space`, `color_range`, subsampling
    /// and the frame size.
    pub key_info: Option<KeyFrameInfo>,
}

/// The colour configuration and size coded in a key frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyFrameInfo {
    /// 8, 10 or 12.
    pub bit_depth: u8,
    /// `color_space` (0 unknown .. 7 sRGB).
    pub color_space: u8,
    /// `color_range`.
    pub full_range: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `frame_width_minus_1 + 1`.
    pub width: u32,
    /// `frame_height_minus_1 + 1`.
    pub height: u32,
}

impl FrameHeader {
    /// Parses the start of a frame's uncompressed header. For a superframe,
    /// the first frame is parsed.
    pub fn parse(frame: &[u8]) -> Result<FrameHeader, CodecError> {
        let mut r = BitReader::new(frame);
        if r.read_u8(2)? != 2 {
            return Err(CodecError::Invalid("VP9 frame_marker"));
        }
        let low = r.read_u8(1)?;
        let high = r.read_u8(1)?;
        let profile = (high << 1) | low;
        if profile == 3 {
            r.skip(1)?;
        }
        let mut h = FrameHeader {
            profile,
            ..FrameHeader::default()
        };
        if r.read_flag()? {
            h.show_existing_frame = true;
            return Ok(h);
        }
        h.key = !r.read_flag()?;
        let _show_frame = r.read_flag()?;
        let _error_resilient = r.read_flag()?;
        if h.key {
            if r.read_bits(24)? != 0x49_83_42 {
                return Err(CodecError::Invalid("VP9 frame_sync_code"));
            }
            let mut k = KeyFrameInfo {
                bit_depth: 8,
                ..KeyFrameInfo::default()
            };
            if profile >= 2 {
                k.bit_depth = if r.read_flag()? { 12 } else { 10 };
            }
            k.color_space = r.read_u8(3)?;
            if k.color_space != 7 {
                k.full_range = r.read_flag()?;
                if profile == 1 || profile == 3 {
                    k.subsampling_x = r.read_flag()?;
                    k.subsampling_y = r.read_flag()?;
                    r.skip(1)?;
                } else {
                    k.subsampling_x = true;
                    k.subsampling_y = true;
                }
            } else {
                k.full_range = true;
                if profile == 1 || profile == 3 {
                    r.skip(1)?;
                }
            }
            k.width = r.read_u32(16)? + 1;
            k.height = r.read_u32(16)? + 1;
            h.key_info = Some(k);
        }
        Ok(h)
    }
}

/// The VP9 level (Annex A of the VP9 binding, by luma picture size) for a
/// frame size: 10, 11, 20, 21, 30, 31, 40, 50, 60.
pub fn level_for_size(width: u32, height: u32) -> u8 {
    let samples = u64::from(width) * u64::from(height);
    const LEVELS: [(u64, u8); 9] = [
        (36_864, 10),
        (73_728, 11),
        (122_880, 20),
        (245_760, 21),
        (552_960, 30),
        (983_040, 31),
        (2_228_224, 40),
        (8_912_896, 50),
        (35_651_584, 60),
    ];
    LEVELS
        .iter()
        .find(|(max, _)| samples <= *max)
        .map_or(62, |&(_, l)| l)
}

/// A `VPCodecConfigurationRecord` (the payload of a version-1 `vpcC` box,
/// after its version and flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpcConfig {
    /// `profile`.
    pub profile: u8,
    /// `level`.
    pub level: u8,
    /// `bitDepth`.
    pub bit_depth: u8,
    /// `chromaSubsampling` (1 = 4:2:0 colocated with luma, 3 = 4:4:4).
    pub chroma_subsampling: u8,
    /// `videoFullRangeFlag`.
    pub full_range: bool,
    /// `colourPrimaries`.
    pub colour_primaries: u8,
    /// `transferCharacteristics`.
    pub transfer: u8,
    /// `matrixCoefficients`.
    pub matrix: u8,
}

impl VpcConfig {
    /// The record for a key frame's header.
    pub fn from_key_frame(h: &FrameHeader) -> Result<Self, CodecError> {
        let k = h
            .key_info
            .ok_or(CodecError::Invalid("VP9 config from a non-key frame"))?;
        let chroma_subsampling = match (k.subsampling_x, k.subsampling_y) {
            (true, true) => 1,
            (true, false) => 2,
            _ => 3,
        };
        Ok(VpcConfig {
            profile: h.profile,
            level: level_for_size(k.width, k.height),
            bit_depth: k.bit_depth,
            chroma_subsampling,
            full_range: k.full_range,
            colour_primaries: 2,
            transfer: 2,
            matrix: 2,
        })
    }

    /// Parses a record.
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        if d.len() < 8 {
            return Err(CodecError::Truncated("vpcC"));
        }
        Ok(VpcConfig {
            profile: d[0],
            level: d[1],
            bit_depth: d[2] >> 4,
            chroma_subsampling: (d[2] >> 1) & 7,
            full_range: d[2] & 1 != 0,
            colour_primaries: d[3],
            transfer: d[4],
            matrix: d[5],
        })
    }

    /// Serializes the record (no codec initialization data).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(8);
        b.put_u8(self.profile);
        b.put_u8(self.level);
        b.put_u8(
            (self.bit_depth << 4)
                | ((self.chroma_subsampling & 7) << 1)
                | u8::from(self.full_range),
        );
        b.put_u8(self.colour_primaries);
        b.put_u8(self.transfer);
        b.put_u8(self.matrix);
        b.put_u16(0);
        b.freeze()
    }

    /// The codec string `vp09.PP.LL.DD`.
    pub fn codec_string(&self) -> heapless::String<32> {
        let mut s = heapless::String::new();
        push_str(&mut s, "vp09.");
        push_dec(&mut s, u64::from(self.profile), 2);
        push_str(&mut s, ".");
        push_dec(&mut s, u64::from(self.level), 2);
        push_str(&mut s, ".");
        push_dec(&mut s, u64::from(self.bit_depth), 2);
        s
    }

    /// The track parameters (the record does not hold the size; pass it).
    pub fn params(&self, width: u32, height: u32) -> TrackParams {
        TrackParams {
            width,
            height,
            codec_string: self.codec_string(),
            ..TrackParams::default()
        }
    }
}

/// Splits an IVF file (the simple container libvpx writes) into frames; used
/// to feed real VP9 frames to tests and tools.
pub fn ivf_frames(data: &Bytes) -> Result<alloc::vec::Vec<(u64, Bytes)>, CodecError> {
    if data.len() < 32 || &data[..4] != b"DKIF" {
        return Err(CodecError::Invalid("IVF signature"));
    }
    let hlen = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut pos = hlen;
    let mut out = alloc::vec::Vec::new();
    while pos + 12 <= data.len() {
        let size =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&data[pos + 4..pos + 12]);
        pos += 12;
        if data.len() - pos < size {
            return Err(CodecError::Truncated("IVF frame"));
        }
        out.push((u64::from_le_bytes(ts), data.slice(pos..pos + size)));
        pos += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libvpx_key_frame() {
        let frames = ivf_frames(&Bytes::from_static(include_bytes!(
            "../../../testdata/vp9.ivf"
        )))
        .unwrap();
        assert_eq!(frames.len(), 15);
        let h = FrameHeader::parse(&frames[0].1).unwrap();
        assert!(h.key);
        let k = h.key_info.unwrap();
        assert_eq!((k.width, k.height, k.bit_depth), (320, 240, 8));
        let c = VpcConfig::from_key_frame(&h).unwrap();
        assert_eq!(c.codec_string().as_str(), "vp09.00.20.08");
        assert_eq!(VpcConfig::parse(&c.to_bytes()).unwrap(), c);
        assert!(!FrameHeader::parse(&frames[1].1).unwrap().key);
    }
}
