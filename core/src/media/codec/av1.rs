//! AV1: OBU headers and the low-overhead bitstream format (AV1 Bitstream &
//! Decoding Process Specification §5.3), the sequence header OBU (§5.5, with
//! `timing_info` §5.5.3 and `color_config` §5.5.2), key frame detection from
//! the frame header (§5.9.2), the `AV1CodecConfigurationRecord` (AV1 Codec
//! ISO Media File Format Binding §2.3) and the codec string
//! `av01.P.LLT.DD` (same document, "Codecs Parameter String").

use super::bits::BitReader;
use super::{push_dec, push_str, CodecError};
use crate::frame::TrackParams;
use bytes::{BufMut, Bytes, BytesMut};

/// `OBU_SEQUENCE_HEADER`.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// `OBU_TEMPORAL_DELIMITER`.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// `OBU_FRAME_HEADER`.
pub const OBU_FRAME_HEADER: u8 = 3;
/// `OBU_FRAME`.
pub const OBU_FRAME: u8 = 6;

/// One OBU of a low-overhead bitstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obu {
    /// `obu_type`.
    pub obu_type: u8,
    /// The whole OBU: header, size field and payload.
    pub raw: Bytes,
    /// The payload alone.
    pub payload: Bytes,
}

/// Reads a `leb128()` value (§4.10.5): at most 8 bytes, at most 32 bits.
pub fn read_leb128(d: &[u8]) -> Result<(u64, usize), CodecError> {
    let mut v = 0u64;
    for i in 0..8 {
        let b = *d.get(i).ok_or(CodecError::Truncated("leb128"))?;
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if v > u64::from(u32::MAX) {
                return Err(CodecError::Invalid("leb128 above 2^32-1"));
            }
            return Ok((v, i + 1));
        }
    }
    Err(CodecError::Invalid("leb128 longer than 8 bytes"))
}

/// Appends `v` as `leb128()`.
pub fn write_leb128(out: &mut BytesMut, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(b);
            return;
        }
        out.put_u8(b | 0x80);
    }
}

/// Iterates over the OBUs of a low-overhead bitstream (every OBU must have
/// `obu_has_size_field`), as zero-copy slices.
#[derive(Clone, Debug)]
pub struct Obus {
    data: Bytes,
    pos: usize,
    failed: bool,
}

impl Obus {
    /// The OBUs of `data`.
    pub fn new(data: Bytes) -> Self {
        Obus {
            data,
            pos: 0,
            failed: false,
        }
    }
}

impl Iterator for Obus {
    type Item = Result<Obu, CodecError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let r = self.parse_one();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

impl Obus {
    fn parse_one(&mut self) -> Result<Obu, CodecError> {
        let d = &self.data[self.pos..];
        let h = d[0];
        if h & 0x80 != 0 {
            return Err(CodecError::Invalid("obu_forbidden_bit"));
        }
        let obu_type = (h >> 3) & 0xF;
        let ext = h & 4 != 0;
        if h & 2 == 0 {
            return Err(CodecError::Unsupported("OBU without obu_has_size_field"));
        }
        let hlen = 1 + usize::from(ext);
        let (size, n) = read_leb128(d.get(hlen..).ok_or(CodecError::Truncated("OBU header"))?)?;
        let start = hlen + n;
        let size = usize::try_from(size).map_err(|_| CodecError::Invalid("obu_size"))?;
        if d.len() - start < size {
            return Err(CodecError::Truncated("OBU"));
        }
        let base = self.pos;
        self.pos += start + size;
        Ok(Obu {
            obu_type,
            raw: self.data.slice(base..base + start + size),
            payload: self.data.slice(base + start..base + start + size),
        })
    }
}

/// What a sequence header says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile`.
    pub profile: u8,
    /// `still_picture`.
    pub still_picture: bool,
    /// `reduced_still_picture_header`.
    pub reduced_still_picture_header: bool,
    /// `seq_level_idx[0]`.
    pub level_idx: u8,
    /// `seq_tier[0]`.
    pub tier: bool,
    /// `(num_units_in_display_tick, time_scale)` when `timing_info` is present.
    pub timing: Option<(u32, u32)>,
    /// `initial_display_delay_minus_1[0] + 1`, when present.
    pub initial_display_delay: Option<u8>,
    /// `max_frame_width_minus_1 + 1`.
    pub width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub height: u32,
    /// `frame_id_numbers_present_flag`.
    pub frame_id_numbers_present: bool,
    /// `additional_frame_id_length_minus_1 + delta_frame_id_length_minus_2 + 3`.
    pub id_len: u32,
    /// Bit depth: 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
    /// `(color_primaries, transfer_characteristics, matrix_coefficients)`.
    pub color: (u8, u8, u8),
    /// `color_range`.
    pub full_range: bool,
}

impl SequenceHeader {
    /// Parses the payload of a sequence header OBU.
    pub fn parse(payload: &[u8]) -> Result<SequenceHeader, CodecError> {
        let mut r = BitReader::new(payload);
        let mut s = SequenceHeader {
            profile: r.read_u8(3)?,
            still_picture: r.read_flag()?,
            reduced_still_picture_header: r.read_flag()?,
            ..SequenceHeader::default()
        };
        if s.profile > 2 {
            return Err(CodecError::Invalid("seq_profile"));
        }
        if s.reduced_still_picture_header {
            s.level_idx = r.read_u8(5)?;
        } else {
            let mut decoder_model_info_present = false;
            let mut buffer_delay_length = 0;
            if r.read_flag()? {
                let units = r.read_u32(32)?;
                let scale = r.read_u32(32)?;
                if r.read_flag()? {
                    let _num_ticks_per_picture_minus_1 = r.read_uvlc()?;
                }
                s.timing = Some((units, scale));
                decoder_model_info_present = r.read_flag()?;
                if decoder_model_info_present {
                    buffer_delay_length = r.read_u32(5)? + 1;
                    r.skip(32 + 5 + 5)?;
                }
            }
            let initial_display_delay_present = r.read_flag()?;
            let count = r.read_u8(5)? + 1;
            for i in 0..count {
                let _operating_point_idc = r.read_u32(12)?;
                let level = r.read_u8(5)?;
                let tier = if level > 7 { r.read_flag()? } else { false };
                if decoder_model_info_present && r.read_flag()? {
                    r.skip(2 * buffer_delay_length as usize + 1)?;
                }
                let mut delay = None;
                if initial_display_delay_present && r.read_flag()? {
                    delay = Some(r.read_u8(4)? + 1);
                }
                if i == 0 {
                    s.level_idx = level;
                    s.tier = tier;
                    s.initial_display_delay = delay;
                }
            }
        }
        let wbits = r.read_u32(4)? + 1;
        let hbits = r.read_u32(4)? + 1;
        s.width = r.read_u32(wbits)? + 1;
        s.height = r.read_u32(hbits)? + 1;
        if !s.reduced_still_picture_header {
            s.frame_id_numbers_present = r.read_flag()?;
        }
        if s.frame_id_numbers_present {
            let delta = r.read_u32(4)? + 2;
            let add = r.read_u32(3)? + 1;
            s.id_len = delta + add;
        }
        r.skip(3)?; // 128x128 superblock, filter intra, intra edge filter
        if !s.reduced_still_picture_header {
            r.skip(4)?; // interintra, masked compound, warped motion, dual filter
            let order_hint = r.read_flag()?;
            if order_hint {
                r.skip(2)?; // jnt_comp, ref_frame_mvs
            }
            let force_screen_content = if r.read_flag()? { 2 } else { r.read_u8(1)? };
            if force_screen_content > 0 && !r.read_flag()? {
                r.skip(1)?; // seq_force_integer_mv
            }
            if order_hint {
                r.skip(3)?;
            }
        }
        r.skip(3)?; // superres, cdef, restoration
        s.read_color_config(&mut r)?;
        let _film_grain_params_present = r.read_flag()?;
        Ok(s)
    }

    fn read_color_config(&mut self, r: &mut BitReader<'_>) -> Result<(), CodecError> {
        let high = r.read_flag()?;
        self.bit_depth = if self.profile == 2 && high {
            if r.read_flag()? {
                12
            } else {
                10
            }
        } else if high {
            10
        } else {
            8
        };
        self.monochrome = if self.profile == 1 {
            false
        } else {
            r.read_flag()?
        };
        self.color = if r.read_flag()? {
            (r.read_u8(8)?, r.read_u8(8)?, r.read_u8(8)?)
        } else {
            (2, 2, 2)
        };
        if self.monochrome {
            self.full_range = r.read_flag()?;
            self.subsampling_x = true;
            self.subsampling_y = true;
            return Ok(());
        }
        if self.color == (1, 13, 0) {
            self.full_range = true;
        } else {
            self.full_range = r.read_flag()?;
            match self.profile {
                0 => (self.subsampling_x, self.subsampling_y) = (true, true),
                1 => {}
                _ => {
                    if self.bit_depth == 12 {
                        self.subsampling_x = r.read_flag()?;
                        if self.subsampling_x {
                            self.subsampling_y = r.read_flag()?;
                        }
                    } else {
                        self.subsampling_x = true;
                    }
                }
            }
            if self.subsampling_x && self.subsampling_y {
                self.chroma_sample_position = r.read_u8(2)?;
            }
        }
        let _separate_uv_delta_q = r.read_flag()?;
        Ok(())
    }

    /// The codec string `av01.P.LLT.DD`.
    pub fn codec_string(&self) -> heapless::String<32> {
        let mut s = heapless::String::new();
        push_str(&mut s, "av01.");
        push_dec(&mut s, u64::from(self.profile), 1);
        push_str(&mut s, ".");
        push_dec(&mut s, u64::from(self.level_idx), 2);
        push_str(&mut s, if self.tier { "H." } else { "M." });
        push_dec(&mut s, u64::from(self.bit_depth), 2);
        s
    }

    /// Frames per second times 1000 from `timing_info` (assuming one tick
    /// per picture), 0 when unknown.
    pub fn frame_rate_milli(&self) -> u32 {
        match self.timing {
            Some((units, scale)) if units > 0 => {
                u32::try_from(u64::from(scale) * 1000 / u64::from(units)).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// The track parameters.
    pub fn params(&self) -> TrackParams {
        TrackParams {
            width: self.width,
            height: self.height,
            frame_rate_milli: self.frame_rate_milli(),
            codec_string: self.codec_string(),
            ..TrackParams::default()
        }
    }
}

/// Whether a temporal unit (low-overhead OBUs) starts with a key frame that
/// is shown, i.e. a random access point: its first frame header has
/// `frame_type == KEY_FRAME` and `show_frame` set (§5.9.2).
pub fn is_key_frame(tu: &Bytes, seq: &SequenceHeader) -> Result<bool, CodecError> {
    if seq.reduced_still_picture_header {
        return Ok(true);
    }
    for obu in Obus::new(tu.clone()) {
        let obu = obu?;
        if obu.obu_type == OBU_FRAME || obu.obu_type == OBU_FRAME_HEADER {
            let mut r = BitReader::new(&obu.payload);
            if r.read_flag()? {
                return Ok(false); // show_existing_frame
            }
            let frame_type = r.read_u8(2)?;
            let show_frame = r.read_flag()?;
            return Ok(frame_type == 0 && show_frame);
        }
    }
    Ok(false)
}

/// Splits a low-overhead bitstream with temporal delimiters (as `ffmpeg -f
/// obu` writes it) into temporal units without their delimiters.
pub fn split_temporal_units(data: Bytes) -> Result<alloc::vec::Vec<Bytes>, CodecError> {
    let mut out = alloc::vec::Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    for obu in Obus::new(data.clone()) {
        let obu = obu?;
        let off = obu.raw.as_ptr() as usize - data.as_ptr() as usize;
        if obu.obu_type == OBU_TEMPORAL_DELIMITER {
            if let Some(s) = start.take() {
                out.push(data.slice(s..end));
            }
        } else if start.is_none() {
            start = Some(off);
        }
        end = off + obu.raw.len();
    }
    if let Some(s) = start {
        out.push(data.slice(s..end));
    }
    Ok(out)
}

/// An `AV1CodecConfigurationRecord` (AV1-ISOBMFF §2.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// The parsed sequence header.
    pub seq: SequenceHeader,
    /// The sequence header OBU (`configOBUs`).
    pub seq_obu: Bytes,
}

impl Av1Config {
    /// A record holding this sequence header OBU (header and size included).
    pub fn from_sequence_header_obu(obu: Bytes) -> Result<Self, CodecError> {
        let o = Obus::new(obu.clone())
            .next()
            .ok_or(CodecError::Truncated("sequence header OBU"))??;
        if o.obu_type != OBU_SEQUENCE_HEADER {
            return Err(CodecError::Invalid("not a sequence header OBU"));
        }
        Ok(Av1Config {
            seq: SequenceHeader::parse(&o.payload)?,
            seq_obu: o.raw,
        })
    }

    /// The first sequence header OBU of a temporal unit, if any.
    pub fn from_temporal_unit(tu: &Bytes) -> Result<Option<Self>, CodecError> {
        for obu in Obus::new(tu.clone()) {
            let obu = obu?;
            if obu.obu_type == OBU_SEQUENCE_HEADER {
                return Ok(Some(Av1Config {
                    seq: SequenceHeader::parse(&obu.payload)?,
                    seq_obu: obu.raw,
                }));
            }
        }
        Ok(None)
    }

    /// Parses a record.
    pub fn parse(data: &Bytes) -> Result<Self, CodecError> {
        if data.len() < 4 {
            return Err(CodecError::Truncated("av1C"));
        }
        if data[0] != 0x81 {
            return Err(CodecError::Invalid("av1C marker/version"));
        }
        Self::from_sequence_header_obu(data.slice(4..))
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Bytes {
        let s = &self.seq;
        let mut b = BytesMut::with_capacity(4 + self.seq_obu.len());
        b.put_u8(0x81);
        b.put_u8((s.profile << 5) | (s.level_idx & 0x1F));
        b.put_u8(
            (u8::from(s.tier) << 7)
                | (u8::from(s.bit_depth > 8) << 6)
                | (u8::from(s.bit_depth == 12) << 5)
                | (u8::from(s.monochrome) << 4)
                | (u8::from(s.subsampling_x) << 3)
                | (u8::from(s.subsampling_y) << 2)
                | (s.chroma_sample_position & 3),
        );
        match s.initial_display_delay {
            Some(d) => b.put_u8(0x10 | (d.wrapping_sub(1) & 0xF)),
            None => b.put_u8(0),
        }
        b.extend_from_slice(&self.seq_obu);
        b.freeze()
    }

    /// The track parameters.
    pub fn params(&self) -> Result<TrackParams, CodecError> {
        Ok(self.seq.params())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::bits::BitWriter;

    /// SVT-AV1's temporal delimiter and sequence header for 320x240 Main
    /// (from core/testdata/av1.obu).
    const START: &[u8] = &[
        0x12, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xfb, 0xf9, 0x00, 0x40,
    ];

    #[test]
    fn parses_svt_sequence_header() {
        let obus: alloc::vec::Vec<_> = Obus::new(Bytes::from_static(START))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(obus[0].obu_type, OBU_TEMPORAL_DELIMITER);
        let c = Av1Config::from_sequence_header_obu(obus[1].raw.clone()).unwrap();
        assert_eq!((c.seq.width, c.seq.height), (320, 240));
        assert_eq!(c.seq.bit_depth, 8);
        assert_eq!(c.seq.codec_string().as_str(), "av01.0.00M.08");
        let rec = c.to_bytes();
        assert_eq!(&rec[..4], &[0x81, 0x00, 0x0c, 0x00]);
        assert_eq!(Av1Config::parse(&rec).unwrap(), c);
    }

    #[test]
    fn sequence_header_with_timing_info() {
        // Profile 0, timing 1/30 with equal picture interval, level 4.0
        // (seq_level_idx 8, Main tier), 1920x1080, 10-bit BT.709.
        let mut w = BitWriter::new();
        w.write_bits(3, 0);
        w.write_bits(2, 0);
        w.write_flag(true); // timing_info_present
        w.write_bits(32, 1);
        w.write_bits(32, 30);
        w.write_flag(true); // equal_picture_interval
        w.write_bits(1, 1); // uvlc 0
        w.write_flag(false); // decoder_model_info_present
        w.write_flag(false); // initial_display_delay_present
        w.write_bits(5, 0);
        w.write_bits(12, 0);
        w.write_bits(5, 8);
        w.write_flag(false); // tier
        w.write_bits(4, 10);
        w.write_bits(4, 10);
        w.write_bits(11, 1919);
        w.write_bits(11, 1079);
        w.write_flag(false); // frame ids
        w.write_bits(3, 0);
        w.write_bits(4, 0);
        w.write_flag(true); // order hint
        w.write_bits(2, 0);
        w.write_flag(true); // choose screen content tools
        w.write_flag(true); // choose integer mv
        w.write_bits(3, 6);
        w.write_bits(3, 0);
        w.write_flag(true); // high_bitdepth
        w.write_flag(false); // mono
        w.write_flag(true); // color description
        w.write_bits(24, 0x01_01_01);
        w.write_flag(false); // range
        w.write_bits(2, 0);
        w.write_flag(false);
        w.write_flag(false); // film grain
        let s = SequenceHeader::parse(&w.finish_rbsp()).unwrap();
        assert_eq!(s.timing, Some((1, 30)));
        assert_eq!(s.frame_rate_milli(), 30_000);
        assert_eq!((s.width, s.height, s.bit_depth), (1920, 1080, 10));
        assert_eq!(s.codec_string().as_str(), "av01.0.08M.10");
    }

    #[test]
    fn leb128() {
        assert_eq!(read_leb128(&[0x80, 0x01]).unwrap(), (128, 2));
        let mut b = BytesMut::new();
        write_leb128(&mut b, 300);
        assert_eq!(read_leb128(&b).unwrap(), (300, 2));
        assert!(read_leb128(&[0x80; 9]).is_err());
    }

    #[test]
    fn splits_real_stream_into_key_temporal_units() {
        let tus = split_temporal_units(Bytes::from_static(include_bytes!(
            "../../../testdata/av1.obu"
        )))
        .unwrap();
        assert_eq!(tus.len(), 15);
        let c = Av1Config::from_temporal_unit(&tus[0]).unwrap().unwrap();
        assert!(is_key_frame(&tus[0], &c.seq).unwrap());
        assert!(!is_key_frame(&tus[1], &c.seq).unwrap());
    }
}
