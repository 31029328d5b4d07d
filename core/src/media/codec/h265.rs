//! H.265 / HEVC: NAL unit header and types (ITU-T H.265 §7.3.1.2, Table 7-1),
//! `profile_tier_level` (§7.3.3), the sequence parameter set up to the
//! conformance window (§7.3.2.2), the `HEVCDecoderConfigurationRecord`
//! (ISO/IEC 14496-15 §8.3.3.1) and the codec string `hvc1.…` of
//! ISO/IEC 14496-15 Annex E.3 (RFC 6381 §3.3).

use super::bits::{unescape_rbsp, BitReader};
use super::h264::read_u16_prefixed;
use super::{push_dec, push_hex_upper_min, push_str, CodecError};
use crate::frame::TrackParams;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

/// Video parameter set.
pub const NAL_VPS: u8 = 32;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// Picture parameter set.
pub const NAL_PPS: u8 = 34;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 35;
/// Prefix SEI.
pub const NAL_SEI_PREFIX: u8 = 39;

/// The `nal_unit_type` of a NAL unit (bits 1..7 of its first byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3F)
}

/// Whether a NAL unit type is an intra random access point (BLA, IDR, CRA:
/// types 16..=23).
pub fn is_irap(t: u8) -> bool {
    (16..=23).contains(&t)
}

/// General profile, tier and level (§7.3.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileTierLevel {
    /// `general_profile_space`.
    pub profile_space: u8,
    /// `general_tier_flag`.
    pub tier: bool,
    /// `general_profile_idc`.
    pub profile_idc: u8,
    /// `general_profile_compatibility_flag[0..32]`, flag 0 in the top bit.
    pub compatibility: u32,
    /// The 48 bits from `general_progressive_source_flag` to
    /// `general_inbld_flag`/reserved, as six bytes.
    pub constraints: [u8; 6],
    /// `general_level_idc` (30 times the level number).
    pub level_idc: u8,
}

impl ProfileTierLevel {
    fn parse(r: &mut BitReader<'_>, max_sub_layers_minus1: u8) -> Result<Self, CodecError> {
        let mut p = ProfileTierLevel {
            profile_space: r.read_u8(2)?,
            tier: r.read_flag()?,
            profile_idc: r.read_u8(5)?,
            compatibility: r.read_u32(32)?,
            ..ProfileTierLevel::default()
        };
        for b in p.constraints.iter_mut() {
            *b = r.read_u8(8)?;
        }
        p.level_idc = r.read_u8(8)?;
        let n = usize::from(max_sub_layers_minus1);
        let mut present = [(false, false); 8];
        for item in present.iter_mut().take(n) {
            *item = (r.read_flag()?, r.read_flag()?);
        }
        if n > 0 {
            r.skip(2 * (8 - n))?;
        }
        for &(profile, level) in present.iter().take(n) {
            if profile {
                r.skip(88)?;
            }
            if level {
                r.skip(8)?;
            }
        }
        Ok(p)
    }

    /// The codec string `hvc1.<space><profile>.<compat>.<tier><level>[.<constraint>…]`
    /// (ISO/IEC 14496-15 E.3): compatibility flags bit-reversed in hex,
    /// trailing zero constraint bytes omitted.
    pub fn codec_string(&self, fourcc: &str) -> heapless::String<32> {
        let mut s = heapless::String::new();
        push_str(&mut s, fourcc);
        push_str(&mut s, ".");
        match self.profile_space {
            1 => push_str(&mut s, "A"),
            2 => push_str(&mut s, "B"),
            3 => push_str(&mut s, "C"),
            _ => {}
        }
        push_dec(&mut s, u64::from(self.profile_idc), 1);
        push_str(&mut s, ".");
        push_hex_upper_min(&mut s, u64::from(self.compatibility.reverse_bits()));
        push_str(&mut s, if self.tier { ".H" } else { ".L" });
        push_dec(&mut s, u64::from(self.level_idc), 1);
        let used = self
            .constraints
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for &b in &self.constraints[..used] {
            push_str(&mut s, ".");
            push_hex_upper_min(&mut s, u64::from(b));
        }
        s
    }
}

/// What a sequence parameter set says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sps {
    /// `sps_max_sub_layers_minus1`.
    pub max_sub_layers_minus1: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// General profile, tier and level.
    pub ptl: ProfileTierLevel,
    /// `chroma_format_idc`.
    pub chroma_format_idc: u32,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u32,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u32,
    /// Width in luma samples inside the conformance window.
    pub width: u32,
    /// Height in luma samples inside the conformance window.
    pub height: u32,
    /// `(vui_num_units_in_tick, vui_time_scale)` when the VUI has timing.
    pub timing: Option<(u32, u32)>,
}

impl Sps {
    /// Parses an SPS NAL unit (two-byte header included).
    pub fn parse(nal: &[u8]) -> Result<Sps, CodecError> {
        if nal_type(nal) != NAL_SPS || nal.len() < 3 {
            return Err(CodecError::Invalid("SPS NAL unit type"));
        }
        if nal.len() > 8192 {
            return Err(CodecError::Invalid("SPS length"));
        }
        let rbsp = unescape_rbsp(&nal[2..]);
        let mut r = BitReader::new(&rbsp);
        let _vps_id = r.read_u8(4)?;
        let max_sub_layers_minus1 = r.read_u8(3)?;
        if max_sub_layers_minus1 > 6 {
            return Err(CodecError::Invalid("sps_max_sub_layers_minus1"));
        }
        let temporal_id_nesting = r.read_flag()?;
        let ptl = ProfileTierLevel::parse(&mut r, max_sub_layers_minus1)?;
        let id = r.read_ue()?;
        if id > 15 {
            return Err(CodecError::Invalid("sps_seq_parameter_set_id"));
        }
        let chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Invalid("chroma_format_idc"));
        }
        let mut separate_colour_plane = false;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.read_flag()?;
        }
        let mut width = r.read_ue()?;
        let mut height = r.read_ue()?;
        if r.read_flag()? {
            // conformance_window_flag (§7.4.3.2.1, Table 6-1).
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            };
            let (sub_w, sub_h) = match chroma_array_type {
                1 => (2, 2),
                2 => (2, 1),
                _ => (1, 1),
            };
            let l = u64::from(r.read_ue()?);
            let rt = u64::from(r.read_ue()?);
            let t = u64::from(r.read_ue()?);
            let b = u64::from(r.read_ue()?);
            let cx = sub_w * (l + rt);
            let cy = sub_h * (t + b);
            if cx >= u64::from(width) || cy >= u64::from(height) {
                return Err(CodecError::Invalid("conformance window"));
            }
            // Both are below the u32 values they are subtracted from.
            width -= cx as u32;
            height -= cy as u32;
        }
        let bit_depth_luma_minus8 = r.read_ue()?;
        let bit_depth_chroma_minus8 = r.read_ue()?;
        if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
            return Err(CodecError::Invalid("bit depth"));
        }
        // The rest is read only for the VUI timing; a stream whose SPS this
        // cannot follow still gets its size and profile.
        let timing = read_to_vui_timing(&mut r, max_sub_layers_minus1).unwrap_or(None);
        Ok(Sps {
            max_sub_layers_minus1,
            temporal_id_nesting,
            ptl,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            width,
            height,
            timing,
        })
    }

    /// Frames per second times 1000 from the VUI timing
    /// (`time_scale / num_units_in_tick`, §E.3.1), 0 when unknown.
    pub fn frame_rate_milli(&self) -> u32 {
        match self.timing {
            Some((units, scale)) if units > 0 => {
                u32::try_from(u64::from(scale) * 1000 / u64::from(units)).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// The track parameters this SPS gives (`hvc1` codec string).
    pub fn params(&self) -> TrackParams {
        TrackParams {
            width: self.width,
            height: self.height,
            frame_rate_milli: self.frame_rate_milli(),
            codec_string: self.ptl.codec_string("hvc1"),
            ..TrackParams::default()
        }
    }
}

/// Reads the SPS from `log2_max_pic_order_cnt_lsb_minus4` to the VUI's
/// `vui_timing_info` (§7.3.2.2.1, §7.3.4 scaling lists, §7.3.7 short-term
/// reference picture sets, §E.2.1 VUI).
fn read_to_vui_timing(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u8,
) -> Result<Option<(u32, u32)>, CodecError> {
    let log2_max_poc_lsb = r.read_ue()?.saturating_add(4);
    if log2_max_poc_lsb > 16 {
        return Err(CodecError::Invalid("log2_max_pic_order_cnt_lsb_minus4"));
    }
    let all_sub_layers = r.read_flag()?;
    let first = if all_sub_layers {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        r.read_ue()?;
        r.read_ue()?;
        r.read_ue()?;
    }
    for _ in 0..6 {
        r.read_ue()?; // coding block and transform sizes, hierarchy depths
    }
    if r.read_flag()? && r.read_flag()? {
        // scaling_list_data() (§7.3.4)
        for size_id in 0..4u32 {
            let step = if size_id == 3 { 3 } else { 1 };
            let mut matrix_id = 0;
            while matrix_id < 6 {
                if !r.read_flag()? {
                    r.read_ue()?; // scaling_list_pred_matrix_id_delta
                } else {
                    let coefs = 64.min(1 << (4 + (size_id << 1)));
                    if size_id > 1 {
                        r.read_se()?;
                    }
                    for _ in 0..coefs {
                        r.read_se()?;
                    }
                }
                matrix_id += step;
            }
        }
    }
    r.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.read_flag()? {
        // pcm_enabled_flag
        r.skip(8)?;
        r.read_ue()?;
        r.read_ue()?;
        r.skip(1)?;
    }
    let num_sets = r.read_ue()?;
    if num_sets > 64 {
        return Err(CodecError::Invalid("num_short_term_ref_pic_sets"));
    }
    let mut num_delta_pocs = [0u32; 65];
    for idx in 0..num_sets as usize {
        let inter = idx != 0 && r.read_flag()?;
        if inter {
            r.skip(1)?; // delta_rps_sign
            r.read_ue()?; // abs_delta_rps_minus1
            let mut n = 0;
            for _ in 0..=num_delta_pocs[idx - 1] {
                let used = r.read_flag()?;
                let use_delta = used || r.read_flag()?;
                if use_delta {
                    n += 1;
                }
            }
            num_delta_pocs[idx] = n;
        } else {
            let neg = r.read_ue()?;
            let pos = r.read_ue()?;
            if neg > 16 || pos > 16 {
                return Err(CodecError::Invalid("short-term reference picture count"));
            }
            for _ in 0..neg + pos {
                r.read_ue()?;
                r.skip(1)?;
            }
            num_delta_pocs[idx] = neg + pos;
        }
    }
    if r.read_flag()? {
        // long_term_ref_pics_present_flag
        let n = r.read_ue()?;
        if n > 32 {
            return Err(CodecError::Invalid("num_long_term_ref_pics_sps"));
        }
        for _ in 0..n {
            r.skip(log2_max_poc_lsb as usize + 1)?;
        }
    }
    r.skip(2)?; // temporal MVP, strong intra smoothing
    if !r.read_flag()? {
        return Ok(None); // no VUI
    }
    if r.read_flag()? && r.read_u8(8)? == 255 {
        r.skip(32)?; // SAR
    }
    if r.read_flag()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_flag()? {
        r.skip(4)?;
        if r.read_flag()? {
            r.skip(24)?;
        }
    }
    if r.read_flag()? {
        r.read_ue()?;
        r.read_ue()?;
    }
    r.skip(3)?; // neutral_chroma, field_seq, frame_field_info
    if r.read_flag()? {
        // default_display_window_flag
        for _ in 0..4 {
            r.read_ue()?;
        }
    }
    if r.read_flag()? {
        let units = r.read_u32(32)?;
        let scale = r.read_u32(32)?;
        return Ok(Some((units, scale)));
    }
    Ok(None)
}

/// The ids at the head of a PPS (§7.3.2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pps {
    /// `pps_pic_parameter_set_id`.
    pub id: u32,
    /// `pps_seq_parameter_set_id`.
    pub sps_id: u32,
}

impl Pps {
    /// Parses a PPS NAL unit (two-byte header included).
    pub fn parse(nal: &[u8]) -> Result<Pps, CodecError> {
        if nal_type(nal) != NAL_PPS || nal.len() < 3 {
            return Err(CodecError::Invalid("PPS NAL unit type"));
        }
        let rbsp = unescape_rbsp(&nal[2..nal.len().min(64)]);
        let mut r = BitReader::new(&rbsp);
        let id = r.read_ue()?;
        let sps_id = r.read_ue()?;
        if id > 63 || sps_id > 15 {
            return Err(CodecError::Invalid("PPS ids"));
        }
        Ok(Pps { id, sps_id })
    }
}

/// Reads the profile, tier and level of a VPS NAL unit (§7.3.2.1).
pub fn parse_vps_ptl(nal: &[u8]) -> Result<ProfileTierLevel, CodecError> {
    if nal_type(nal) != NAL_VPS || nal.len() < 3 {
        return Err(CodecError::Invalid("VPS NAL unit type"));
    }
    let rbsp = unescape_rbsp(&nal[2..nal.len().min(256)]);
    let mut r = BitReader::new(&rbsp);
    r.skip(4 + 2 + 6)?; // vps id, base layer flags, max_layers_minus1
    let max_sub_layers_minus1 = r.read_u8(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(CodecError::Invalid("vps_max_sub_layers_minus1"));
    }
    r.skip(1 + 16)?; // temporal id nesting, reserved 0xffff
    ProfileTierLevel::parse(&mut r, max_sub_layers_minus1)
}

/// An `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §8.3.3.1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HevcConfig {
    /// General profile, tier and level.
    pub ptl: ProfileTierLevel,
    /// `chromaFormat`.
    pub chroma_format_idc: u8,
    /// `bitDepthLumaMinus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bitDepthChromaMinus8`.
    pub bit_depth_chroma_minus8: u8,
    /// `numTemporalLayers`.
    pub num_temporal_layers: u8,
    /// `temporalIdNested`.
    pub temporal_id_nested: bool,
    /// `lengthSizeMinusOne + 1`.
    pub length_size: u8,
    /// Parameter-set arrays: `(NAL_unit_type, NAL units)`, VPS, SPS, PPS
    /// and SEI in that order when built here.
    pub arrays: Vec<(u8, Vec<Bytes>)>,
}

impl HevcConfig {
    /// A record for these parameter sets, with profile, tier, level and
    /// format taken from the first SPS.
    pub fn from_parameter_sets(
        vps: Vec<Bytes>,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    ) -> Result<Self, CodecError> {
        let first = Sps::parse(sps.first().ok_or(CodecError::Invalid("hvcC without SPS"))?)?;
        if vps.len() + sps.len() + pps.len() > 3 * super::h264::MAX_PARAMETER_SETS {
            return Err(CodecError::Invalid("too many parameter sets"));
        }
        Ok(HevcConfig {
            ptl: first.ptl,
            chroma_format_idc: first.chroma_format_idc as u8,
            bit_depth_luma_minus8: first.bit_depth_luma_minus8 as u8,
            bit_depth_chroma_minus8: first.bit_depth_chroma_minus8 as u8,
            num_temporal_layers: first.max_sub_layers_minus1 + 1,
            temporal_id_nested: first.temporal_id_nesting,
            length_size: 4,
            arrays: alloc::vec![(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)],
        })
    }

    /// Parses a record, slicing the NAL units out of `data`.
    pub fn parse(data: &Bytes) -> Result<Self, CodecError> {
        let d = &data[..];
        if d.len() < 23 {
            return Err(CodecError::Truncated("hvcC"));
        }
        if d[0] != 1 {
            return Err(CodecError::Invalid("hvcC configurationVersion"));
        }
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&d[6..12]);
        let mut c = HevcConfig {
            ptl: ProfileTierLevel {
                profile_space: d[1] >> 6,
                tier: d[1] & 0x20 != 0,
                profile_idc: d[1] & 0x1F,
                compatibility: u32::from_be_bytes([d[2], d[3], d[4], d[5]]),
                constraints,
                level_idc: d[12],
            },
            chroma_format_idc: d[16] & 3,
            bit_depth_luma_minus8: d[17] & 7,
            bit_depth_chroma_minus8: d[18] & 7,
            num_temporal_layers: (d[21] >> 3) & 7,
            temporal_id_nested: d[21] & 4 != 0,
            length_size: (d[21] & 3) + 1,
            arrays: Vec::new(),
        };
        let n_arrays = d[22];
        let mut pos = 23;
        for _ in 0..n_arrays {
            if d.len() < pos + 3 {
                return Err(CodecError::Truncated("hvcC array"));
            }
            let t = d[pos] & 0x3F;
            let n = usize::from(u16::from_be_bytes([d[pos + 1], d[pos + 2]]));
            pos += 3;
            if n > super::h264::MAX_PARAMETER_SETS {
                return Err(CodecError::Invalid("hvcC numNalus"));
            }
            let mut nals = Vec::with_capacity(n);
            for _ in 0..n {
                nals.push(read_u16_prefixed(data, &mut pos, "hvcC NAL unit")?);
            }
            c.arrays.push((t, nals));
        }
        Ok(c)
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(1);
        b.put_u8(
            (self.ptl.profile_space << 6)
                | (u8::from(self.ptl.tier) << 5)
                | (self.ptl.profile_idc & 0x1F),
        );
        b.put_u32(self.ptl.compatibility);
        b.extend_from_slice(&self.ptl.constraints);
        b.put_u8(self.ptl.level_idc);
        b.put_u16(0xF000); // min_spatial_segmentation_idc 0
        b.put_u8(0xFC); // parallelismType 0
        b.put_u8(0xFC | (self.chroma_format_idc & 3));
        b.put_u8(0xF8 | (self.bit_depth_luma_minus8 & 7));
        b.put_u8(0xF8 | (self.bit_depth_chroma_minus8 & 7));
        b.put_u16(0); // avgFrameRate unknown
        b.put_u8(
            ((self.num_temporal_layers & 7) << 3)
                | (u8::from(self.temporal_id_nested) << 2)
                | (self.length_size.clamp(1, 4) - 1),
        );
        let arrays: Vec<_> = self.arrays.iter().filter(|(_, n)| !n.is_empty()).collect();
        b.put_u8(arrays.len().min(255) as u8);
        for (t, nals) in arrays.into_iter().take(255) {
            b.put_u8(0x80 | (t & 0x3F)); // array_completeness = 1
            b.put_u16(nals.len().min(0xFFFF) as u16);
            for n in nals.iter().take(0xFFFF) {
                b.put_u16(n.len().min(0xFFFF) as u16);
                b.extend_from_slice(&n[..n.len().min(0xFFFF)]);
            }
        }
        b.freeze()
    }

    /// The NAL units of one type.
    pub fn nals(&self, t: u8) -> impl Iterator<Item = &Bytes> {
        self.arrays
            .iter()
            .filter(move |(at, _)| *at == t)
            .flat_map(|(_, n)| n.iter())
    }

    /// The track parameters: resolution from the first SPS, codec string
    /// from the record.
    pub fn params(&self) -> Result<TrackParams, CodecError> {
        let sps = Sps::parse(
            self.nals(NAL_SPS)
                .next()
                .ok_or(CodecError::Invalid("hvcC without SPS"))?,
        )?;
        let mut p = sps.params();
        p.codec_string = self.ptl.codec_string("hvc1");
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x265's VPS and SPS for 320x240 Main@L2 (from core/testdata/h265_aac.ts).
    const VPS: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x98, 0x09,
    ];
    const SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a,
        0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10,
    ];
    const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

    #[test]
    fn parses_x265_sps() {
        let s = Sps::parse(SPS).unwrap();
        assert_eq!((s.width, s.height), (320, 240));
        assert_eq!(s.ptl.profile_idc, 1);
        assert_eq!(s.ptl.level_idc, 60);
        assert_eq!(s.ptl.compatibility, 0x6000_0000);
        assert_eq!(s.ptl.constraints, [0x90, 0, 0, 0, 0, 0]);
        assert_eq!(s.params().codec_string.as_str(), "hvc1.1.6.L60.90");
        assert_eq!(s.timing, Some((1, 30)));
        assert_eq!(s.params().frame_rate_milli, 30_000);
        assert_eq!(parse_vps_ptl(VPS).unwrap(), s.ptl);
        assert_eq!(Pps::parse(PPS).unwrap(), Pps { id: 0, sps_id: 0 });
    }

    /// Found by the `h265` fuzz target: a huge
    /// `log2_max_pic_order_cnt_lsb_minus4` overflowed an addition.
    #[test]
    fn fuzz_regression_huge_poc_lsb() {
        let data: &[u8] = &[
            0xc3, 0x00, 0x00, 0x00, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x8d, 0x00, 0x25, 0x00,
            0x00, 0xf5, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x41, 0x00,
            0x00, 0x8d, 0x00, 0x25, 0x00, 0x00, 0x41, 0x00, 0x00, 0x00, 0xf5, 0x30,
        ];
        let _ = Sps::parse(data);
        let _ = parse_vps_ptl(data);
        let _ = HevcConfig::parse(&Bytes::copy_from_slice(data));
    }

    #[test]
    fn codec_string_examples_from_14496_15() {
        // E.3: "hev1.1.6.L93.B0" and "hev1.A4.41.H120.B0.23".
        let p = ProfileTierLevel {
            profile_idc: 1,
            compatibility: 0x6000_0000,
            constraints: [0xB0, 0, 0, 0, 0, 0],
            level_idc: 93,
            ..Default::default()
        };
        assert_eq!(p.codec_string("hev1").as_str(), "hev1.1.6.L93.B0");
        let p = ProfileTierLevel {
            profile_space: 1,
            tier: true,
            profile_idc: 4,
            compatibility: 0x82000000,
            constraints: [0xB0, 0x23, 0, 0, 0, 0],
            level_idc: 120,
        };
        assert_eq!(p.codec_string("hev1").as_str(), "hev1.A4.41.H120.B0.23");
    }

    #[test]
    fn hvcc_round_trip() {
        let c = HevcConfig::from_parameter_sets(
            alloc::vec![Bytes::from_static(VPS)],
            alloc::vec![Bytes::from_static(SPS)],
            alloc::vec![Bytes::from_static(PPS)],
        )
        .unwrap();
        let b = c.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(b[22], 3);
        let back = HevcConfig::parse(&b).unwrap();
        assert_eq!(back, c);
        let p = back.params().unwrap();
        assert_eq!((p.width, p.height), (320, 240));
    }
}
