//! AAC: the `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1, with
//! `GetAudioObjectType()` escapes, explicit and backward-compatible SBR/PS
//! signalling §1.6.5/§1.6.6, `GASpecificConfig` §4.4.1), the ADTS header
//! (ISO/IEC 14496-3 §1.A.2.2, ISO/IEC 13818-7 §6.2), the MPEG-4 `esds`
//! descriptors (ISO/IEC 14496-1 §7.2.6) and the codec string `mp4a.40.N`
//! (RFC 6381 §3.3).

use super::bits::{BitReader, BitWriter};
use super::{push_dec, push_str, CodecError};
use crate::frame::TrackParams;
use bytes::{BufMut, Bytes, BytesMut};

/// The sample rates of `samplingFrequencyIndex` 0..=12 (Table 1.18).
pub const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// The index of a sample rate in [`SAMPLE_RATES`].
pub fn sample_rate_index(rate: u32) -> Option<u8> {
    SAMPLE_RATES
        .iter()
        .position(|&r| r == rate)
        .map(|i| i as u8)
}

/// What an `AudioSpecificConfig` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The first `audioObjectType` coded (5 = SBR, 29 = PS for explicit
    /// hierarchical signalling; 2 = AAC LC).
    pub object_type: u8,
    /// The object type of the core (differs from `object_type` for explicit
    /// hierarchical SBR/PS).
    pub core_object_type: u8,
    /// The core sample rate in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration` (0 = defined by a program config element).
    pub channel_config: u8,
    /// SBR is signalled (explicitly or by a backward-compatible extension).
    pub sbr: bool,
    /// PS is signalled.
    pub ps: bool,
    /// The output sample rate with SBR.
    pub extension_sample_rate: Option<u32>,
    /// `frameLengthFlag` (960-sample frames).
    pub frame_length_960: bool,
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, CodecError> {
    let t = r.read_u8(5)?;
    if t == 31 {
        Ok(32 + r.read_u8(6)?)
    } else {
        Ok(t)
    }
}

fn read_sample_rate(r: &mut BitReader<'_>) -> Result<u32, CodecError> {
    let idx = r.read_u8(4)?;
    match idx {
        0xF => {
            let v = r.read_u32(24)?;
            if v == 0 {
                return Err(CodecError::Invalid("explicit sample rate 0"));
            }
            Ok(v)
        }
        i if usize::from(i) < SAMPLE_RATES.len() => Ok(SAMPLE_RATES[usize::from(i)]),
        _ => Err(CodecError::Invalid("samplingFrequencyIndex")),
    }
}

impl AudioSpecificConfig {
    /// An AAC LC config.
    pub fn lc(sample_rate: u32, channel_config: u8) -> Self {
        AudioSpecificConfig {
            object_type: 2,
            core_object_type: 2,
            sample_rate,
            channel_config,
            ..AudioSpecificConfig::default()
        }
    }

    /// Parses an `AudioSpecificConfig`.
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        let mut r = BitReader::new(d);
        let object_type = read_object_type(&mut r)?;
        if object_type == 0 {
            return Err(CodecError::Invalid("audioObjectType 0"));
        }
        let mut c = AudioSpecificConfig {
            object_type,
            core_object_type: object_type,
            sample_rate: read_sample_rate(&mut r)?,
            channel_config: r.read_u8(4)?,
            ..AudioSpecificConfig::default()
        };
        let mut explicit_ext = false;
        if object_type == 5 || object_type == 29 {
            explicit_ext = true;
            c.sbr = true;
            c.ps = object_type == 29;
            c.extension_sample_rate = Some(read_sample_rate(&mut r)?);
            c.core_object_type = read_object_type(&mut r)?;
            if c.core_object_type == 22 {
                let _ext_channel_config = r.read_u8(4)?;
            }
        }
        match c.core_object_type {
            1 | 2 | 3 | 4 | 6 | 7 | 17 | 19 | 20 | 21 | 22 | 23 => {}
            _ => return Ok(c), // not a GA object type: nothing more is read
        }
        // GASpecificConfig (§4.4.1).
        c.frame_length_960 = r.read_flag()?;
        if r.read_flag()? {
            r.skip(14)?; // coreCoderDelay
        }
        let extension_flag = r.read_flag()?;
        if c.channel_config == 0 {
            // A program_config_element follows; its length is not needed for
            // anything this module reports, and no extension is read past it.
            return Ok(c);
        }
        if c.core_object_type == 6 || c.core_object_type == 20 {
            r.skip(3)?;
        }
        if extension_flag {
            if c.core_object_type == 22 {
                r.skip(16)?;
            }
            if matches!(c.core_object_type, 17 | 19 | 20 | 23) {
                r.skip(3)?;
            }
            r.skip(1)?;
        }
        // Backward-compatible explicit signalling (§1.6.5.2).
        if !explicit_ext && r.bits_left() >= 16 && r.read_bits(11)? == 0x2B7 {
            let ext_type = read_object_type(&mut r)?;
            if ext_type == 5 && r.read_flag()? {
                c.sbr = true;
                c.extension_sample_rate = Some(read_sample_rate(&mut r)?);
                if r.bits_left() >= 12 && r.read_bits(11)? == 0x548 {
                    c.ps = r.read_flag()?;
                }
            }
        }
        Ok(c)
    }

    /// Serializes a two-byte (or longer, for escapes and explicit rates)
    /// config with hierarchical SBR/PS signalling when `object_type` is 5 or 29.
    pub fn to_bytes(&self) -> Bytes {
        fn write_ot(w: &mut BitWriter, t: u8) {
            if t >= 32 {
                w.write_bits(5, 31);
                w.write_bits(6, u64::from(t - 32));
            } else {
                w.write_bits(5, u64::from(t));
            }
        }
        fn write_sr(w: &mut BitWriter, rate: u32) {
            match sample_rate_index(rate) {
                Some(i) => w.write_bits(4, u64::from(i)),
                None => {
                    w.write_bits(4, 0xF);
                    w.write_bits(24, u64::from(rate));
                }
            }
        }
        let mut w = BitWriter::new();
        write_ot(&mut w, self.object_type);
        write_sr(&mut w, self.sample_rate);
        w.write_bits(4, u64::from(self.channel_config));
        if self.object_type == 5 || self.object_type == 29 {
            write_sr(
                &mut w,
                self.extension_sample_rate
                    .unwrap_or(self.sample_rate.saturating_mul(2)),
            );
            write_ot(&mut w, self.core_object_type);
        }
        w.write_flag(self.frame_length_960);
        w.write_flag(false);
        w.write_flag(false);
        Bytes::from(w.finish())
    }

    /// Output channel count (Table 1.19; 2 with PS on a mono core; 0 when a
    /// program config element defines it).
    pub fn channels(&self) -> u8 {
        if self.ps && self.channel_config == 1 {
            return 2;
        }
        match self.channel_config {
            1..=6 => self.channel_config,
            7 | 12 | 14 => 8,
            11 => 7,
            13 => 24,
            _ => 0,
        }
    }

    /// Samples per frame per channel: 1024 (960 with `frameLengthFlag`),
    /// doubled by SBR at the output rate.
    pub fn frame_samples(&self) -> u32 {
        if self.frame_length_960 {
            960
        } else {
            1024
        }
    }

    /// The codec string `mp4a.40.<object type>`.
    pub fn codec_string(&self) -> heapless::String<32> {
        let mut s = heapless::String::new();
        push_str(&mut s, "mp4a.40.");
        push_dec(&mut s, u64::from(self.object_type), 1);
        s
    }

    /// The track parameters (sample rate of the core decoder's clock).
    pub fn params(&self) -> TrackParams {
        TrackParams {
            sample_rate: self.sample_rate,
            channels: self.channels(),
            codec_string: self.codec_string(),
            ..TrackParams::default()
        }
    }
}

/// An ADTS header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// `profile_ObjectType + 1` = the MPEG-4 audio object type (1..=4).
    pub object_type: u8,
    /// `sampling_frequency_index`.
    pub sample_rate_index: u8,
    /// `channel_configuration`.
    pub channel_config: u8,
    /// Header length: 7, or 9 with a CRC.
    pub header_len: usize,
    /// `aac_frame_length`: header plus payload.
    pub frame_len: usize,
}

impl AdtsHeader {
    /// Parses the header at the start of `d` (needs 7 bytes).
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        if d.len() < 7 {
            return Err(CodecError::Truncated("ADTS header"));
        }
        if d[0] != 0xFF || d[1] & 0xF6 != 0xF0 {
            return Err(CodecError::Invalid("ADTS syncword"));
        }
        let protection_absent = d[1] & 1 == 1;
        let header_len = if protection_absent { 7 } else { 9 };
        let h = AdtsHeader {
            object_type: (d[2] >> 6) + 1,
            sample_rate_index: (d[2] >> 2) & 0xF,
            channel_config: ((d[2] & 1) << 2) | (d[3] >> 6),
            header_len,
            frame_len: (usize::from(d[3] & 3) << 11)
                | (usize::from(d[4]) << 3)
                | usize::from(d[5] >> 5),
        };
        if usize::from(h.sample_rate_index) >= SAMPLE_RATES.len() {
            return Err(CodecError::Invalid("ADTS sampling_frequency_index"));
        }
        if h.frame_len < header_len {
            return Err(CodecError::Invalid("ADTS aac_frame_length"));
        }
        if d[6] & 3 != 0 {
            return Err(CodecError::Unsupported(
                "ADTS frame with several raw data blocks",
            ));
        }
        Ok(h)
    }

    /// The `AudioSpecificConfig` equivalent to this header.
    pub fn config(&self) -> AudioSpecificConfig {
        // The index was checked by `parse`; a hand-built header with a bad
        // one gets rate 0 rather than a panic.
        let rate = SAMPLE_RATES
            .get(usize::from(self.sample_rate_index))
            .copied()
            .unwrap_or(0);
        AudioSpecificConfig::lc(rate, self.channel_config).with_object_type(self.object_type)
    }

    /// A header for a raw access unit of `payload_len` bytes under `asc`
    /// (the core object type and rate are used; ADTS cannot say more).
    pub fn for_config(asc: &AudioSpecificConfig, payload_len: usize) -> Result<Self, CodecError> {
        if !(1..=4).contains(&asc.core_object_type) {
            return Err(CodecError::Unsupported("object type in ADTS"));
        }
        let sample_rate_index = sample_rate_index(asc.sample_rate)
            .ok_or(CodecError::Unsupported("sample rate in ADTS"))?;
        if asc.channel_config > 7 {
            return Err(CodecError::Unsupported("channel configuration in ADTS"));
        }
        let frame_len = payload_len + 7;
        if frame_len > 0x1FFF {
            return Err(CodecError::Invalid("AAC frame too long for ADTS"));
        }
        Ok(AdtsHeader {
            object_type: asc.core_object_type,
            sample_rate_index,
            channel_config: asc.channel_config,
            header_len: 7,
            frame_len,
        })
    }

    /// Writes the 7-byte header (no CRC).
    pub fn write(&self, out: &mut BytesMut) {
        let len = self.frame_len;
        out.put_u8(0xFF);
        out.put_u8(0xF1); // MPEG-4, layer 0, protection absent
        out.put_u8(
            ((self.object_type.wrapping_sub(1) & 3) << 6)
                | ((self.sample_rate_index & 0xF) << 2)
                | ((self.channel_config >> 2) & 1),
        );
        out.put_u8(((self.channel_config & 3) << 6) | ((len >> 11) & 3) as u8);
        out.put_u8((len >> 3) as u8);
        out.put_u8((((len & 7) as u8) << 5) | 0x1F); // buffer fullness 0x7FF: VBR
        out.put_u8(0xFC);
    }
}

impl AudioSpecificConfig {
    fn with_object_type(mut self, t: u8) -> Self {
        self.object_type = t;
        self.core_object_type = t;
        self
    }
}

/// Builds the payload of an `esds` box (after version and flags): an
/// ES_Descriptor holding a DecoderConfigDescriptor (`objectTypeIndication`
/// 0x40 for MPEG-4 audio, 0x6B for MPEG-1 audio) with the decoder specific
/// info, and an SLConfigDescriptor (ISO/IEC 14496-1 §7.2.6.5, §7.2.6.6).
pub fn esds_payload(
    object_type_indication: u8,
    decoder_specific: &[u8],
    avg_bitrate: u32,
) -> Bytes {
    fn put_descriptor(out: &mut BytesMut, tag: u8, body: &[u8]) {
        out.put_u8(tag);
        // The 4-byte size form, as most writers use; sizes here are small.
        let len = body.len() as u32;
        out.put_u8(0x80 | ((len >> 21) & 0x7F) as u8);
        out.put_u8(0x80 | ((len >> 14) & 0x7F) as u8);
        out.put_u8(0x80 | ((len >> 7) & 0x7F) as u8);
        out.put_u8((len & 0x7F) as u8);
        out.extend_from_slice(body);
    }
    let mut dcd = BytesMut::new();
    dcd.put_u8(object_type_indication);
    dcd.put_u8((0x05 << 2) | 1); // audio stream, upstream 0, reserved 1
    dcd.put_uint(0, 3); // bufferSizeDB
    dcd.put_u32(avg_bitrate); // maxBitrate
    dcd.put_u32(avg_bitrate);
    if !decoder_specific.is_empty() {
        put_descriptor(&mut dcd, 0x05, decoder_specific);
    }
    let mut es = BytesMut::new();
    es.put_u16(0); // ES_ID
    es.put_u8(0); // no dependency, URL or OCR stream
    put_descriptor(&mut es, 0x04, &dcd);
    put_descriptor(&mut es, 0x06, &[0x02]);
    let mut out = BytesMut::new();
    put_descriptor(&mut out, 0x03, &es);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_48k_stereo() {
        let c = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(
            (c.object_type, c.sample_rate, c.channel_config),
            (2, 48_000, 2)
        );
        assert!(!c.sbr);
        assert_eq!(c.codec_string().as_str(), "mp4a.40.2");
        assert_eq!(
            &AudioSpecificConfig::lc(48_000, 2).to_bytes()[..],
            &[0x11, 0x90]
        );
    }

    #[test]
    fn explicit_he_aac_v2() {
        // AOT 29 (PS), 24 kHz core, mono, extension 48 kHz, core AOT 2.
        let c = AudioSpecificConfig {
            object_type: 29,
            core_object_type: 2,
            sample_rate: 24_000,
            channel_config: 1,
            extension_sample_rate: Some(48_000),
            ..Default::default()
        };
        let b = c.to_bytes();
        let p = AudioSpecificConfig::parse(&b).unwrap();
        assert!(p.sbr && p.ps);
        assert_eq!(p.channels(), 2);
        assert_eq!(p.core_object_type, 2);
        assert_eq!(p.extension_sample_rate, Some(48_000));
        assert_eq!(p.codec_string().as_str(), "mp4a.40.29");
    }

    #[test]
    fn backward_compatible_sbr_and_escapes() {
        // LC 24 kHz stereo, then sync extension 0x2B7, AOT 5, sbr 1, 48 kHz.
        let mut w = BitWriter::new();
        w.write_bits(5, 2);
        w.write_bits(4, 6);
        w.write_bits(4, 2);
        w.write_bits(3, 0);
        w.write_bits(11, 0x2B7);
        w.write_bits(5, 5);
        w.write_flag(true);
        w.write_bits(4, 3);
        let c = AudioSpecificConfig::parse(&w.finish()).unwrap();
        assert!(c.sbr);
        assert_eq!(c.extension_sample_rate, Some(48_000));
        assert_eq!(c.object_type, 2);
        // Escaped object type 42 (USAC) with an explicit 37800 Hz rate.
        let c = AudioSpecificConfig {
            object_type: 42,
            core_object_type: 42,
            sample_rate: 37_800,
            channel_config: 2,
            ..Default::default()
        };
        let p = AudioSpecificConfig::parse(&c.to_bytes()).unwrap();
        assert_eq!((p.object_type, p.sample_rate), (42, 37_800));
    }

    #[test]
    fn adts_round_trip() {
        let asc = AudioSpecificConfig::lc(44_100, 2);
        let h = AdtsHeader::for_config(&asc, 100).unwrap();
        let mut b = BytesMut::new();
        h.write(&mut b);
        let back = AdtsHeader::parse(&b).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.frame_len, 107);
        assert_eq!(back.config(), asc);
        assert!(AdtsHeader::parse(&[0xFF, 0xF1, 0x50, 0x80, 0, 0x1F, 0xFD]).is_err());
    }

    #[test]
    fn esds_layout() {
        let e = esds_payload(0x40, &[0x11, 0x90], 0);
        assert_eq!(e[0], 0x03);
        assert_eq!(e.len(), 5 + 3 + 5 + 13 + 5 + 2 + 5 + 1);
    }
}
