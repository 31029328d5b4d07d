//! Codec bitstream parsers and the configuration records built from them.
//!
//! * [`bits`]: bit reader and writer, exp-Golomb, emulation prevention.
//! * [`nal`]: Annex-B byte streams and length-prefixed NAL units.
//! * [`h264`], [`h265`]: parameter sets, `avcC`/`hvcC`, RFC 6381 strings.
//! * [`av1`]: OBUs, the sequence header, `av1C`.
//! * [`vp9`]: the uncompressed frame header, `vpcC`.
//! * [`aac`]: AudioSpecificConfig, ADTS, `esds`.
//! * [`opus`]: `OpusHead`, `dOps`, packet durations.
//! * [`mp3`]: MPEG audio frame headers.
//!
//! Every parser takes untrusted bytes and returns a [`CodecError`] instead
//! of panicking.

pub mod aac;
pub mod av1;
pub mod bits;
pub mod h264;
pub mod h265;
pub mod mp3;
pub mod nal;
pub mod opus;
pub mod vp9;

use crate::frame::{CodecId, TrackParams};
use bytes::Bytes;

/// What went wrong while reading a codec bitstream or record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The data ended inside the named structure.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field holds a value the specification forbids.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Valid, but a feature this implementation does not handle.
    #[error("unsupported {0}")]
    Unsupported(&'static str),
}

/// Appends `s` to a bounded codec string, ignoring what does not fit (no
/// codec string this module builds is longer than 32 bytes).
pub(crate) fn push_str(out: &mut heapless::String<32>, s: &str) {
    for c in s.chars() {
        if out.push(c).is_err() {
            return;
        }
    }
}

/// Appends `v` in lower-case hex with exactly `digits` digits.
pub(crate) fn push_hex(out: &mut heapless::String<32>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = ((v >> (i * 4)) & 0xF) as u8;
        let c = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        let _ = out.push(c as char);
    }
}

/// Appends `v` in upper-case hex without leading zeros.
pub(crate) fn push_hex_upper_min(out: &mut heapless::String<32>, v: u64) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let d = ((v >> (i * 4)) & 0xF) as u8;
        let c = if d < 10 { b'0' + d } else { b'A' + d - 10 };
        let _ = out.push(c as char);
    }
}

/// Appends `v` in decimal, zero-padded to at least `width` digits.
pub(crate) fn push_dec(out: &mut heapless::String<32>, v: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut n = 0;
    let mut x = v;
    loop {
        buf[n] = b'0' + (x % 10) as u8;
        n += 1;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    for _ in n..width {
        let _ = out.push('0');
    }
    for i in (0..n).rev() {
        let _ = out.push(buf[i] as char);
    }
}

/// Parses a track's decoder configuration record and returns what it says
/// about the track (resolution, frame rate, sample rate, channels, RFC 6381
/// codec string).
pub fn track_params(codec: CodecId, config: &Bytes) -> Result<TrackParams, CodecError> {
    match codec {
        CodecId::H264 => h264::AvcConfig::parse(config)?.params(),
        CodecId::H265 => h265::HevcConfig::parse(config)?.params(),
        CodecId::Av1 => av1::Av1Config::parse(config)?.params(),
        CodecId::Vp9 => Ok(vp9::VpcConfig::parse(config)?.params(0, 0)),
        CodecId::Aac => Ok(aac::AudioSpecificConfig::parse(config)?.params()),
        CodecId::Opus => Ok(opus::OpusHead::parse(config)?.params()),
        CodecId::Mp3 => {
            let mut p = TrackParams::default();
            push_str(&mut p.codec_string, "mp4a.40.34");
            Ok(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every parser returns a value or an error on arbitrary bytes, and
        /// never panics.
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), head in any::<u8>()) {
            let mut d = data.clone();
            d.insert(0, head);
            let b = Bytes::from(d.clone());
            let _ = h264::Sps::parse(&d);
            let _ = h264::Pps::parse(&d);
            let _ = h264::AvcConfig::parse(&b);
            let _ = h265::Sps::parse(&d);
            let _ = h265::Pps::parse(&d);
            let _ = h265::parse_vps_ptl(&d);
            let _ = h265::HevcConfig::parse(&b);
            let _ = av1::SequenceHeader::parse(&d);
            let _ = av1::Av1Config::parse(&b);
            let _ = av1::split_temporal_units(b.clone());
            let _ = vp9::FrameHeader::parse(&d);
            let _ = vp9::ivf_frames(&b);
            let _ = aac::AudioSpecificConfig::parse(&d);
            let _ = aac::AdtsHeader::parse(&d);
            let _ = opus::OpusHead::parse(&d);
            let _ = opus::packet_samples(&d);
            let _ = mp3::FrameHeader::parse(&d);
            for codec in [CodecId::H264, CodecId::H265, CodecId::Av1, CodecId::Vp9, CodecId::Aac, CodecId::Opus, CodecId::Mp3] {
                let _ = track_params(codec, &b);
            }
        }

        /// SPS-shaped inputs (right NAL type, mutated x264 body) never panic.
        #[test]
        fn sps_mutations_never_panic(flips in proptest::collection::vec((0usize..25, any::<u8>()), 0..8)) {
            let mut sps = [
                0x67u8, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
                0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
            ];
            for (i, v) in flips {
                if i > 0 { sps[i] ^= v; }
            }
            let _ = h264::Sps::parse(&sps).map(|s| s.params());
        }

        /// The same for a real H.265 SPS, an AV1 sequence header OBU and a
        /// VP9 key frame header: valid prefixes, mutated bodies.
        #[test]
        fn structured_mutations_never_panic(flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..10)) {
            let mut sps = alloc::vec![
                0x42u8, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
                0x00, 0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b,
                0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10,
            ];
            let mut seq = alloc::vec![0x0au8, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xfb, 0xf9, 0x00, 0x40];
            let mut vp9 = alloc::vec![0x82u8, 0x49, 0x83, 0x42, 0x00, 0x13, 0xf0, 0x0e, 0xf6, 0x00, 0x38, 0x24, 0x1c];
            for &(i, v) in &flips {
                if i >= 2 && i < sps.len() { sps[i] ^= v; }
                if i >= 2 && i < seq.len() { seq[i] ^= v; }
                if i >= 1 && i < vp9.len() { vp9[i] ^= v; }
            }
            let _ = h265::Sps::parse(&sps).map(|s| s.params());
            let _ = h265::HevcConfig::from_parameter_sets(alloc::vec![], alloc::vec![Bytes::from(sps.clone())], alloc::vec![]);
            let _ = av1::Av1Config::from_sequence_header_obu(Bytes::from(seq.clone())).map(|c| c.to_bytes());
            let _ = vp9::FrameHeader::parse(&vp9).map(|h| vp9::VpcConfig::from_key_frame(&h));
        }
    }
}
