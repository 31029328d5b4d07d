//! Opus: the identification header `OpusHead` (RFC 7845 §5.1), the `dOps`
//! box payload (Encapsulation of Opus in ISO Base Media File Format §4.3.2),
//! and packet durations from the TOC byte (RFC 6716 §3.1).

use super::{push_str, CodecError};
use crate::frame::TrackParams;
use bytes::{BufMut, Bytes, BytesMut};

/// What `OpusHead` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channel count.
    pub channels: u8,
    /// Samples (at 48 kHz) to discard from the decoder output at the start.
    pub pre_skip: u16,
    /// The original input sample rate (informational).
    pub input_sample_rate: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family.
    pub mapping_family: u8,
    /// For a family other than 0: stream count, coupled count and the
    /// mapping table (up to 255 entries).
    pub mapping: Option<(u8, u8, heapless::Vec<u8, 255>)>,
}

impl OpusHead {
    /// A mono or stereo head (mapping family 0).
    pub fn new(channels: u8, pre_skip: u16, input_sample_rate: u32) -> Self {
        OpusHead {
            channels,
            pre_skip,
            input_sample_rate,
            ..OpusHead::default()
        }
    }

    /// Parses `OpusHead`.
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        if d.len() < 19 {
            return Err(CodecError::Truncated("OpusHead"));
        }
        if &d[..8] != b"OpusHead" {
            return Err(CodecError::Invalid("OpusHead magic"));
        }
        if d[8] & 0xF0 != 0 {
            return Err(CodecError::Unsupported("OpusHead version"));
        }
        let mut h = OpusHead {
            channels: d[9],
            pre_skip: u16::from_le_bytes([d[10], d[11]]),
            input_sample_rate: u32::from_le_bytes([d[12], d[13], d[14], d[15]]),
            output_gain: i16::from_le_bytes([d[16], d[17]]),
            mapping_family: d[18],
            mapping: None,
        };
        if h.channels == 0 {
            return Err(CodecError::Invalid("OpusHead channel count"));
        }
        if h.mapping_family != 0 {
            let n = usize::from(h.channels);
            if d.len() < 21 + n {
                return Err(CodecError::Truncated("OpusHead channel mapping"));
            }
            let mut table = heapless::Vec::new();
            // n <= 255 = the capacity.
            let _ = table.extend_from_slice(&d[21..21 + n]);
            h.mapping = Some((d[19], d[20], table));
        } else if h.channels > 2 {
            return Err(CodecError::Invalid(
                "OpusHead family 0 with more than 2 channels",
            ));
        }
        Ok(h)
    }

    /// Serializes `OpusHead`.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(21 + usize::from(self.channels));
        b.extend_from_slice(b"OpusHead");
        b.put_u8(1);
        b.put_u8(self.channels);
        b.put_u16_le(self.pre_skip);
        b.put_u32_le(self.input_sample_rate);
        b.put_i16_le(self.output_gain);
        b.put_u8(self.mapping_family);
        if let Some((streams, coupled, table)) = &self.mapping {
            b.put_u8(*streams);
            b.put_u8(*coupled);
            b.extend_from_slice(table);
        }
        b.freeze()
    }

    /// The `dOps` box payload (big-endian fields, version 0).
    pub fn to_dops(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(11 + usize::from(self.channels));
        b.put_u8(0);
        b.put_u8(self.channels);
        b.put_u16(self.pre_skip);
        b.put_u32(self.input_sample_rate);
        b.put_i16(self.output_gain);
        b.put_u8(self.mapping_family);
        if let Some((streams, coupled, table)) = &self.mapping {
            b.put_u8(*streams);
            b.put_u8(*coupled);
            b.extend_from_slice(table);
        }
        b.freeze()
    }

    /// The track parameters (Opus always decodes at 48 kHz).
    pub fn params(&self) -> TrackParams {
        let mut p = TrackParams {
            sample_rate: 48_000,
            channels: self.channels,
            ..TrackParams::default()
        };
        push_str(&mut p.codec_string, "opus");
        p
    }
}

/// The duration of an Opus packet in 48 kHz samples, from its TOC byte and
/// frame count (RFC 6716 §3.1, §3.2.5).
pub fn packet_samples(packet: &[u8]) -> Result<u32, CodecError> {
    let toc = *packet.first().ok_or(CodecError::Truncated("Opus packet"))?;
    let config = toc >> 3;
    // Frame sizes in 1/400 s units' multiples, expressed as 48 kHz samples.
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let count = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(
            *packet
                .get(1)
                .ok_or(CodecError::Truncated("Opus frame count"))?
                & 0x3F,
        ),
    };
    let total = frame * count;
    if total > 5760 {
        return Err(CodecError::Invalid("Opus packet longer than 120 ms"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trip_and_dops() {
        let h = OpusHead::new(2, 312, 48_000);
        let b = h.to_bytes();
        assert_eq!(b.len(), 19);
        assert_eq!(OpusHead::parse(&b).unwrap(), h);
        assert_eq!(
            &h.to_dops()[..],
            &[0, 2, 0x01, 0x38, 0, 0, 0xBB, 0x80, 0, 0, 0]
        );
        assert_eq!(h.params().codec_string.as_str(), "opus");
        assert!(OpusHead::parse(b"OpusHead\x01\x03\0\0\0\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(packet_samples(&[0xFC]).unwrap(), 960); // CELT FB 20 ms, 1 frame
        assert_eq!(packet_samples(&[0xFD]).unwrap(), 1920); // two frames
        assert_eq!(packet_samples(&[0x0B, 0x03]).unwrap(), 2880); // SILK 20 ms x 3
        assert!(packet_samples(&[0x1B, 0x03]).is_err()); // 3 x 60 ms
    }
}
