//! MPEG-1/2/2.5 audio frame headers (ISO/IEC 11172-3 §2.4.1.3, ISO/IEC
//! 13818-3 §2.4.2.3): bitrate, sample rate, channel mode and frame length.

use super::CodecError;

/// One frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// 1 for MPEG-1, 2 for MPEG-2, 25 for MPEG-2.5.
    pub version: u8,
    /// 1, 2 or 3.
    pub layer: u8,
    /// Bits per second.
    pub bitrate: u32,
    /// Samples per second.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u8,
    /// The whole frame's length in bytes, header included.
    pub frame_len: usize,
    /// Samples per channel in the frame.
    pub samples: u32,
}

impl FrameHeader {
    /// Parses the 4-byte header at the start of `d`.
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        if d.len() < 4 {
            return Err(CodecError::Truncated("MPEG audio header"));
        }
        if d[0] != 0xFF || d[1] & 0xE0 != 0xE0 {
            return Err(CodecError::Invalid("MPEG audio sync"));
        }
        let version = match (d[1] >> 3) & 3 {
            0 => 25,
            2 => 2,
            3 => 1,
            _ => return Err(CodecError::Invalid("MPEG audio version")),
        };
        let layer = match (d[1] >> 1) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return Err(CodecError::Invalid("MPEG audio layer")),
        };
        let br_idx = usize::from(d[2] >> 4);
        let sr_idx = usize::from((d[2] >> 2) & 3);
        if br_idx == 0 || br_idx == 15 {
            return Err(CodecError::Unsupported(
                "free-format or invalid MPEG audio bitrate",
            ));
        }
        if sr_idx == 3 {
            return Err(CodecError::Invalid("MPEG audio sample rate"));
        }
        let padding = u32::from((d[2] >> 1) & 1);
        let channels = if d[3] >> 6 == 3 { 1 } else { 2 };
        const BR_V1: [[u32; 15]; 3] = [
            [
                0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
            ],
            [
                0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
            ],
            [
                0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
            ],
        ];
        const BR_V2: [[u32; 15]; 2] = [
            [
                0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
            ],
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        ];
        let bitrate = 1000
            * if version == 1 {
                BR_V1[usize::from(layer - 1)][br_idx]
            } else {
                BR_V2[usize::from(layer > 1)][br_idx]
            };
        let sample_rate = [44_100, 48_000, 32_000][sr_idx]
            / match version {
                1 => 1,
                2 => 2,
                _ => 4,
            };
        let (samples, frame_len) = match layer {
            1 => (384, (12 * bitrate / sample_rate + padding) * 4),
            2 => (1152, 144 * bitrate / sample_rate + padding),
            _ if version == 1 => (1152, 144 * bitrate / sample_rate + padding),
            _ => (576, 72 * bitrate / sample_rate + padding),
        };
        Ok(FrameHeader {
            version,
            layer,
            bitrate,
            sample_rate,
            channels,
            frame_len: frame_len as usize,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpeg1_layer3_128k() {
        let h = FrameHeader::parse(&[0xFF, 0xFB, 0x90, 0x64]).unwrap();
        assert_eq!(
            (h.version, h.layer, h.bitrate, h.sample_rate),
            (1, 3, 128_000, 44_100)
        );
        assert_eq!(h.frame_len, 417);
        assert_eq!(h.channels, 2);
        assert!(FrameHeader::parse(&[0xFF, 0xFB, 0xF0, 0]).is_err());
    }
}
