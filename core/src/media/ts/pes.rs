//! PES packet headers (H.222.0 §2.4.3.6-7, Table 2-21): stream ids, packet
//! length, and the 33-bit PTS/DTS fields with their marker bits.

use crate::media::ts::demux::TsError;
use bytes::{BufMut, BytesMut};

/// `stream_id` of the first video stream.
pub const STREAM_ID_VIDEO: u8 = 0xE0;
/// `stream_id` of the first MPEG audio stream.
pub const STREAM_ID_AUDIO: u8 = 0xC0;
/// `stream_id` of private_stream_1 (Opus).
pub const STREAM_ID_PRIVATE_1: u8 = 0xBD;

/// Writes a 5-byte PTS or DTS field with prefix `prefix` ('0010', '0011' or
/// '0001').
fn put_timestamp(out: &mut BytesMut, prefix: u8, ts: u64) {
    let ts = ts & 0x1_FFFF_FFFF;
    out.put_u8((prefix << 4) | (((ts >> 30) as u8 & 7) << 1) | 1);
    out.put_u16((((ts >> 15) & 0x7FFF) as u16) << 1 | 1);
    out.put_u16(((ts & 0x7FFF) as u16) << 1 | 1);
}

/// Reads a 5-byte PTS or DTS field (marker bits are not checked: some
/// muxers get them wrong and the value is still right).
fn read_timestamp(d: &[u8]) -> u64 {
    (u64::from(d[0] >> 1) & 7) << 30
        | u64::from(u16::from_be_bytes([d[1], d[2]]) >> 1) << 15
        | u64::from(u16::from_be_bytes([d[3], d[4]]) >> 1)
}

/// Writes a PES header for a payload of `payload_len` bytes. `PES_packet_length`
/// is 0 (unbounded) when `unbounded` or when the packet is longer than 65535.
/// `dts` is written only when it differs from `pts`.
pub fn write_header(
    out: &mut BytesMut,
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    payload_len: usize,
    unbounded: bool,
) {
    let dts = dts.filter(|&d| d & 0x1_FFFF_FFFF != pts & 0x1_FFFF_FFFF);
    let header_data_len = if dts.is_some() { 10 } else { 5 };
    let len = 3 + header_data_len + payload_len;
    out.put_slice(&[0, 0, 1, stream_id]);
    out.put_u16(if unbounded || len > 0xFFFF {
        0
    } else {
        len as u16
    });
    out.put_u8(0x84); // '10', not scrambled, data_alignment_indicator
    out.put_u8(if dts.is_some() { 0xC0 } else { 0x80 });
    out.put_u8(header_data_len as u8);
    match dts {
        Some(d) => {
            put_timestamp(out, 0b0011, pts);
            put_timestamp(out, 0b0001, d);
        }
        None => put_timestamp(out, 0b0010, pts),
    }
}

/// A parsed PES header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PesHeader {
    /// `stream_id`.
    pub stream_id: u8,
    /// `PES_packet_length` (0 = unbounded).
    pub packet_length: u16,
    /// The raw 33-bit PTS.
    pub pts: Option<u64>,
    /// The raw 33-bit DTS.
    pub dts: Option<u64>,
    /// Offset of the payload from the start of the packet.
    pub payload_offset: usize,
}

impl PesHeader {
    /// Parses the header at the start of a PES packet (`00 00 01 ...`).
    pub fn parse(d: &[u8]) -> Result<Self, TsError> {
        if d.len() < 6 || d[..3] != [0, 0, 1] {
            return Err(TsError::Pes("missing packet_start_code_prefix"));
        }
        let stream_id = d[3];
        let packet_length = u16::from_be_bytes([d[4], d[5]]);
        let mut h = PesHeader {
            stream_id,
            packet_length,
            pts: None,
            dts: None,
            payload_offset: 6,
        };
        // Stream ids without the optional header (Table 2-21).
        if matches!(
            stream_id,
            0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
        ) {
            return Ok(h);
        }
        if d.len() < 9 {
            return Err(TsError::Pes("truncated PES header"));
        }
        if d[6] & 0xC0 != 0x80 {
            return Err(TsError::Pes("PES header marker '10'"));
        }
        let flags = d[7] >> 6;
        let hlen = usize::from(d[8]);
        if d.len() < 9 + hlen {
            return Err(TsError::Pes("truncated PES header"));
        }
        let opt = &d[9..9 + hlen];
        match flags {
            2 if opt.len() >= 5 => h.pts = Some(read_timestamp(opt)),
            3 if opt.len() >= 10 => {
                h.pts = Some(read_timestamp(opt));
                h.dts = Some(read_timestamp(&opt[5..]));
            }
            0 => {}
            _ => return Err(TsError::Pes("PTS_DTS_flags without room for them")),
        }
        h.payload_offset = 9 + hlen;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_with_33_bit_values() {
        let mut b = BytesMut::new();
        let pts = (1u64 << 33) - 5;
        write_header(&mut b, STREAM_ID_VIDEO, pts, Some(pts - 3003), 1000, false);
        let h = PesHeader::parse(&b).unwrap();
        assert_eq!(h.pts, Some(pts));
        assert_eq!(h.dts, Some(pts - 3003));
        assert_eq!(h.payload_offset, 19);
        assert_eq!(usize::from(h.packet_length), 13 + 1000);
        let mut b = BytesMut::new();
        write_header(&mut b, STREAM_ID_AUDIO, 90_000, Some(90_000), 70_000, false);
        let h = PesHeader::parse(&b).unwrap();
        assert_eq!((h.pts, h.dts, h.packet_length), (Some(90_000), None, 0));
    }
}
