//! H.264 / AVC: NAL unit types (ITU-T H.264 §7.4.1, Table 7-1), the sequence
//! parameter set (§7.3.2.1.1, with VUI timing from Annex E.1.1), the
//! `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1) and the RFC 6381
//! §3.3 codec string `avc1.PPCCLL`.

use super::bits::{unescape_rbsp, BitReader};
use super::{push_hex, push_str, CodecError};
use crate::frame::TrackParams;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

/// Coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// Supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The `nal_unit_type` of a NAL unit (its first byte's low 5 bits).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

/// The most parameter sets of one kind an `avcC` this module builds holds.
pub const MAX_PARAMETER_SETS: usize = 32;

/// What a sequence parameter set says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// The byte holding `constraint_set0_flag`..`constraint_set5_flag` and the
    /// two reserved bits, as coded.
    pub constraint_flags: u8,
    /// `level_idc`.
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub id: u32,
    /// `chroma_format_idc` (1 = 4:2:0 when absent).
    pub chroma_format_idc: u32,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u32,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u32,
    /// Width in luma samples after cropping.
    pub width: u32,
    /// Height in luma samples after cropping.
    pub height: u32,
    /// `frame_mbs_only_flag`.
    pub frame_mbs_only: bool,
    /// `(num_units_in_tick, time_scale)` from the VUI, when present.
    pub timing: Option<(u32, u32)>,
}

impl Sps {
    /// Parses an SPS NAL unit (with its one-byte NAL header, emulation
    /// prevention still in place).
    pub fn parse(nal: &[u8]) -> Result<Sps, CodecError> {
        if nal_type(nal) != NAL_SPS {
            return Err(CodecError::Invalid("SPS NAL unit type"));
        }
        // An SPS is small; anything this long is not one.
        if nal.len() > 4096 {
            return Err(CodecError::Invalid("SPS length"));
        }
        let rbsp = unescape_rbsp(&nal[1..]);
        let mut r = BitReader::new(&rbsp);
        let mut s = Sps {
            profile_idc: r.read_u8(8)?,
            constraint_flags: r.read_u8(8)?,
            level_idc: r.read_u8(8)?,
            id: r.read_ue()?,
            chroma_format_idc: 1,
            ..Sps::default()
        };
        if s.id > 31 {
            return Err(CodecError::Invalid("seq_parameter_set_id"));
        }
        let mut separate_colour_plane = false;
        if matches!(
            s.profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            s.chroma_format_idc = r.read_ue()?;
            if s.chroma_format_idc > 3 {
                return Err(CodecError::Invalid("chroma_format_idc"));
            }
            if s.chroma_format_idc == 3 {
                separate_colour_plane = r.read_flag()?;
            }
            s.bit_depth_luma_minus8 = r.read_ue()?;
            s.bit_depth_chroma_minus8 = r.read_ue()?;
            if s.bit_depth_luma_minus8 > 6 || s.bit_depth_chroma_minus8 > 6 {
                return Err(CodecError::Invalid("bit depth"));
            }
            let _qpprime_y_zero_transform_bypass = r.read_flag()?;
            if r.read_flag()? {
                // seq_scaling_matrix_present_flag: skip the lists (§7.3.2.1.1.1).
                let lists = if s.chroma_format_idc != 3 { 8 } else { 12 };
                for i in 0..lists {
                    if r.read_flag()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let _log2_max_frame_num_minus4 = r.read_ue()?;
        match r.read_ue()? {
            0 => {
                let _log2_max_poc_lsb_minus4 = r.read_ue()?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.read_flag()?;
                let _offset_for_non_ref_pic = r.read_se()?;
                let _offset_for_top_to_bottom_field = r.read_se()?;
                let n = r.read_ue()?;
                if n > 255 {
                    return Err(CodecError::Invalid("num_ref_frames_in_pic_order_cnt_cycle"));
                }
                for _ in 0..n {
                    let _offset_for_ref_frame = r.read_se()?;
                }
            }
            2 => {}
            _ => return Err(CodecError::Invalid("pic_order_cnt_type")),
        }
        let _max_num_ref_frames = r.read_ue()?;
        let _gaps_in_frame_num_allowed = r.read_flag()?;
        let width_mbs = u64::from(r.read_ue()?) + 1;
        let height_map_units = u64::from(r.read_ue()?) + 1;
        s.frame_mbs_only = r.read_flag()?;
        if !s.frame_mbs_only {
            let _mb_adaptive_frame_field = r.read_flag()?;
        }
        let _direct_8x8_inference = r.read_flag()?;
        let field_factor = if s.frame_mbs_only { 1 } else { 2 };
        let mut width = width_mbs * 16;
        let mut height = height_map_units * 16 * field_factor;
        if r.read_flag()? {
            // frame_cropping_flag: offsets in crop units (§7.4.2.1.1, Table 6-1).
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                s.chroma_format_idc
            };
            let (sub_w, sub_h) = match chroma_array_type {
                1 => (2, 2),
                2 => (2, 1),
                _ => (1, 1),
            };
            let unit_x = if chroma_array_type == 0 { 1 } else { sub_w };
            let unit_y = if chroma_array_type == 0 { 1 } else { sub_h } * field_factor;
            let left = u64::from(r.read_ue()?);
            let right = u64::from(r.read_ue()?);
            let top = u64::from(r.read_ue()?);
            let bottom = u64::from(r.read_ue()?);
            let cx = unit_x * (left + right);
            let cy = unit_y * (top + bottom);
            if cx >= width || cy >= height {
                return Err(CodecError::Invalid("frame cropping"));
            }
            width -= cx;
            height -= cy;
        }
        s.width = u32::try_from(width).map_err(|_| CodecError::Invalid("width"))?;
        s.height = u32::try_from(height).map_err(|_| CodecError::Invalid("height"))?;
        if r.read_flag()? {
            s.timing = parse_vui_timing(&mut r)?;
        }
        Ok(s)
    }

    /// Frames per second times 1000, from the VUI timing (frame rate is
    /// `time_scale / (2 * num_units_in_tick)`, Annex E.2.1), 0 when unknown.
    pub fn frame_rate_milli(&self) -> u32 {
        match self.timing {
            Some((units, scale)) if units > 0 => {
                let v = u64::from(scale) * 1000 / (2 * u64::from(units));
                u32::try_from(v).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// The RFC 6381 codec string `avc1.PPCCLL`.
    pub fn codec_string(&self) -> heapless::String<32> {
        let mut s = heapless::String::new();
        push_str(&mut s, "avc1.");
        push_hex(&mut s, u64::from(self.profile_idc), 2);
        push_hex(&mut s, u64::from(self.constraint_flags), 2);
        push_hex(&mut s, u64::from(self.level_idc), 2);
        s
    }

    /// The track parameters this SPS gives.
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

/// The head of a picture parameter set (§7.3.2.2): the ids that tie it to
/// its SPS, and the entropy coder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pps {
    /// `pic_parameter_set_id`.
    pub id: u32,
    /// `seq_parameter_set_id`.
    pub sps_id: u32,
    /// `entropy_coding_mode_flag` (CABAC).
    pub cabac: bool,
}

impl Pps {
    /// Parses a PPS NAL unit (header included).
    pub fn parse(nal: &[u8]) -> Result<Pps, CodecError> {
        if nal_type(nal) != NAL_PPS {
            return Err(CodecError::Invalid("PPS NAL unit type"));
        }
        let rbsp = unescape_rbsp(&nal[1..nal.len().min(64)]);
        let mut r = BitReader::new(&rbsp);
        let id = r.read_ue()?;
        let sps_id = r.read_ue()?;
        if id > 255 || sps_id > 31 {
            return Err(CodecError::Invalid("PPS ids"));
        }
        Ok(Pps {
            id,
            sps_id,
            cabac: r.read_flag()?,
        })
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), CodecError> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.read_se()?;
            if !(-128..=127).contains(&delta) {
                return Err(CodecError::Invalid("delta_scale"));
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Reads the VUI up to and including `timing_info` (H.264 Annex E.1.1).
fn parse_vui_timing(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, CodecError> {
    if r.read_flag()? {
        // aspect_ratio_info_present_flag
        if r.read_u8(8)? == 255 {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.read_flag()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_flag()? {
        // video_signal_type_present_flag
        r.skip(4)?; // video_format, video_full_range_flag
        if r.read_flag()? {
            r.skip(24)?; // colour description
        }
    }
    if r.read_flag()? {
        let _ = r.read_ue()?;
        let _ = r.read_ue()?;
    }
    if r.read_flag()? {
        let units = r.read_u32(32)?;
        let scale = r.read_u32(32)?;
        let _fixed_frame_rate = r.read_flag()?;
        return Ok(Some((units, scale)));
    }
    Ok(None)
}

/// An `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility`.
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// `lengthSizeMinusOne + 1`.
    pub length_size: u8,
    /// The SPS NAL units.
    pub sps: Vec<Bytes>,
    /// The PPS NAL units.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// A record for these parameter sets (4-byte lengths).
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<Self, CodecError> {
        let first = sps.first().ok_or(CodecError::Invalid("avcC without SPS"))?;
        if first.len() < 4 {
            return Err(CodecError::Truncated("SPS"));
        }
        if sps.len() > MAX_PARAMETER_SETS || pps.len() > MAX_PARAMETER_SETS {
            return Err(CodecError::Invalid("too many parameter sets"));
        }
        Ok(AvcConfig {
            profile: first[1],
            compatibility: first[2],
            level: first[3],
            length_size: 4,
            sps,
            pps,
        })
    }

    /// Parses a record, slicing the parameter sets out of `data`.
    pub fn parse(data: &Bytes) -> Result<Self, CodecError> {
        let d = &data[..];
        if d.len() < 7 {
            return Err(CodecError::Truncated("avcC"));
        }
        if d[0] != 1 {
            return Err(CodecError::Invalid("avcC configurationVersion"));
        }
        let mut c = AvcConfig {
            profile: d[1],
            compatibility: d[2],
            level: d[3],
            length_size: (d[4] & 3) + 1,
            ..AvcConfig::default()
        };
        let mut pos = 5;
        let n_sps = usize::from(d[pos] & 0x1F);
        pos += 1;
        for _ in 0..n_sps {
            c.sps.push(read_u16_prefixed(data, &mut pos, "avcC SPS")?);
        }
        let n_pps = usize::from(*d.get(pos).ok_or(CodecError::Truncated("avcC"))?);
        pos += 1;
        if n_pps > MAX_PARAMETER_SETS {
            return Err(CodecError::Invalid("avcC numOfPictureParameterSets"));
        }
        for _ in 0..n_pps {
            c.pps.push(read_u16_prefixed(data, &mut pos, "avcC PPS")?);
        }
        Ok(c)
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(1);
        b.put_u8(self.profile);
        b.put_u8(self.compatibility);
        b.put_u8(self.level);
        b.put_u8(0xFC | (self.length_size.clamp(1, 4) - 1));
        b.put_u8(0xE0 | (self.sps.len().min(31) as u8));
        for s in self.sps.iter().take(31) {
            b.put_u16(s.len().min(0xFFFF) as u16);
            b.extend_from_slice(&s[..s.len().min(0xFFFF)]);
        }
        b.put_u8(self.pps.len().min(255) as u8);
        for p in self.pps.iter().take(255) {
            b.put_u16(p.len().min(0xFFFF) as u16);
            b.extend_from_slice(&p[..p.len().min(0xFFFF)]);
        }
        if matches!(self.profile, 100 | 110 | 122 | 144) {
            if let Some(Ok(sps)) = self.sps.first().map(|s| Sps::parse(s)) {
                b.put_u8(0xFC | (sps.chroma_format_idc as u8 & 3));
                b.put_u8(0xF8 | (sps.bit_depth_luma_minus8 as u8 & 7));
                b.put_u8(0xF8 | (sps.bit_depth_chroma_minus8 as u8 & 7));
                b.put_u8(0);
            }
        }
        b.freeze()
    }

    /// Parses the first SPS.
    pub fn first_sps(&self) -> Result<Sps, CodecError> {
        Sps::parse(
            self.sps
                .first()
                .ok_or(CodecError::Invalid("avcC without SPS"))?,
        )
    }

    /// The track parameters of the first SPS.
    pub fn params(&self) -> Result<TrackParams, CodecError> {
        Ok(self.first_sps()?.params())
    }
}

pub(crate) fn read_u16_prefixed(
    data: &Bytes,
    pos: &mut usize,
    what: &'static str,
) -> Result<Bytes, CodecError> {
    let d = &data[..];
    if d.len() < *pos + 2 {
        return Err(CodecError::Truncated(what));
    }
    let len = usize::from(u16::from_be_bytes([d[*pos], d[*pos + 1]]));
    let s = *pos + 2;
    if d.len() < s + len {
        return Err(CodecError::Truncated(what));
    }
    *pos = s + len;
    Ok(data.slice(s..s + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x264's SPS for 320x240 High@1.3 (from core/testdata/h264_aac.ts).
    pub(crate) const SPS_320X240_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];

    #[test]
    fn parses_x264_high_sps() {
        let s = Sps::parse(SPS_320X240_HIGH).unwrap();
        assert_eq!((s.width, s.height), (320, 240));
        assert_eq!(s.profile_idc, 100);
        assert_eq!(s.level_idc, 13);
        assert_eq!(s.codec_string().as_str(), "avc1.64000d");
        assert_eq!(s.frame_rate_milli(), 30_000);
    }

    #[test]
    fn cropping_1080p() {
        // Baseline 1920x1080: 120x68 macroblocks cropped by 8 lines
        // (bottom offset 4 in 4:2:0 crop units).
        let mut w = super::super::bits::BitWriter::new();
        w.write_bits(8, 66);
        w.write_bits(8, 0xC0);
        w.write_bits(8, 40);
        w.write_ue(0); // sps id
        w.write_ue(0); // log2_max_frame_num_minus4
        w.write_ue(2); // poc type
        w.write_ue(1); // max refs
        w.write_flag(false);
        w.write_ue(119);
        w.write_ue(67);
        w.write_flag(true); // frame_mbs_only
        w.write_flag(true); // direct_8x8
        w.write_flag(true); // cropping
        w.write_ue(0);
        w.write_ue(0);
        w.write_ue(0);
        w.write_ue(4);
        w.write_flag(false); // no VUI
        let mut nal = alloc::vec![0x67];
        nal.extend(super::super::bits::escape_rbsp(&w.finish_rbsp()));
        let s = Sps::parse(&nal).unwrap();
        assert_eq!((s.width, s.height), (1920, 1080));
        assert_eq!(s.codec_string().as_str(), "avc1.42c028");
        assert_eq!(s.timing, None);
    }

    /// High profile SPS with scaling matrices in it (lists 0..7: explicit
    /// deltas, a "use default" list, absent lists), 1280x720, VUI timing
    /// 60 fps: the size and rate come out right only if every list is
    /// skipped exactly (§7.3.2.1.1.1).
    #[test]
    fn skips_sps_scaling_lists() {
        use super::super::bits::{escape_rbsp, BitWriter};
        let mut w = BitWriter::new();
        w.write_bits(8, 100);
        w.write_bits(8, 0);
        w.write_bits(8, 31);
        w.write_ue(0); // sps id
        w.write_ue(1); // chroma_format_idc 4:2:0
        w.write_ue(0); // bit depths
        w.write_ue(0);
        w.write_flag(false); // qpprime bypass
        w.write_flag(true); // seq_scaling_matrix_present_flag
        for i in 0..8 {
            match i % 3 {
                0 => {
                    w.write_flag(true);
                    let size = if i < 6 { 16 } else { 64 };
                    for j in 0..size {
                        w.write_se(if j % 2 == 0 { 3 } else { -2 });
                    }
                }
                1 => {
                    w.write_flag(true);
                    w.write_se(-8); // nextScale 0 at j = 0: use the default list
                }
                _ => w.write_flag(false),
            }
        }
        w.write_ue(0); // log2_max_frame_num_minus4
        w.write_ue(0); // poc type 0
        w.write_ue(2); // log2_max_poc_lsb_minus4
        w.write_ue(4); // max refs
        w.write_flag(false);
        w.write_ue(79); // 1280 / 16 - 1
        w.write_ue(44); // 720 / 16 - 1
        w.write_flag(true); // frame_mbs_only
        w.write_flag(true); // direct_8x8
        w.write_flag(false); // no cropping
        w.write_flag(true); // VUI
        w.write_flag(false); // aspect ratio
        w.write_flag(false); // overscan
        w.write_flag(false); // video signal
        w.write_flag(false); // chroma loc
        w.write_flag(true); // timing
        w.write_bits(32, 1);
        w.write_bits(32, 120);
        w.write_flag(true);
        let mut nal = alloc::vec![0x67];
        nal.extend(escape_rbsp(&w.finish_rbsp()));
        let s = Sps::parse(&nal).unwrap();
        assert_eq!((s.width, s.height), (1280, 720));
        assert_eq!(s.frame_rate_milli(), 60_000);
        assert_eq!(s.codec_string().as_str(), "avc1.64001f");
    }

    #[test]
    fn parses_x264_pps() {
        let p = Pps::parse(&[0x68, 0xeb, 0xe0, 0xe4, 0xb2, 0x2c]).unwrap();
        assert_eq!((p.id, p.sps_id, p.cabac), (0, 0, true));
    }

    #[test]
    fn avcc_round_trip() {
        let sps = Bytes::from_static(SPS_320X240_HIGH);
        let pps = Bytes::from_static(&[0x68, 0xeb, 0xe0, 0xe4, 0xb2, 0x2c]);
        let c = AvcConfig::from_parameter_sets(alloc::vec![sps.clone()], alloc::vec![pps.clone()])
            .unwrap();
        let b = c.to_bytes();
        assert_eq!(&b[..6], &[1, 0x64, 0x00, 0x0d, 0xFF, 0xE1]);
        let back = AvcConfig::parse(&b).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.params().unwrap().codec_string.as_str(), "avc1.64000d");
    }
}
