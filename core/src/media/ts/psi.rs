//! Program-specific information: the program association section
//! (H.222.0 §2.4.4.3, Table 2-30), the TS program map section (§2.4.4.8,
//! Table 2-33), descriptors (§2.6), and reassembly of sections that span
//! packets (§2.4.4.1-2, `pointer_field`).

use super::crc::crc32_mpeg2;
use crate::media::ts::demux::TsError;
use alloc::vec::Vec;
use bytes::{BufMut, BytesMut};

/// `table_id` of a program association section.
pub const TABLE_PAT: u8 = 0x00;
/// `table_id` of a TS program map section.
pub const TABLE_PMT: u8 = 0x02;
/// The largest `section_length` of a PAT or PMT (§2.4.4.3: 1021).
pub const MAX_SECTION_LENGTH: usize = 1021;

/// Writes a long-form section: header, `body`, CRC-32.
fn write_section(out: &mut BytesMut, table_id: u8, id: u16, version: u8, body: &[u8]) {
    let start = out.len();
    let section_length = 5 + body.len() + 4;
    out.put_u8(table_id);
    out.put_u16(0xB000 | (section_length as u16 & 0x3FF)); // syntax 1, '0', reserved
    out.put_u16(id);
    out.put_u8(0xC1 | ((version & 0x1F) << 1)); // current_next_indicator 1
    out.put_u8(0); // section_number
    out.put_u8(0); // last_section_number
    out.extend_from_slice(body);
    let crc = crc32_mpeg2(&out[start..]);
    out.put_u32(crc);
}

/// Builds a PAT section for one program.
pub fn build_pat(out: &mut BytesMut, transport_stream_id: u16, program_number: u16, pmt_pid: u16) {
    let mut body = [0u8; 4];
    body[..2].copy_from_slice(&program_number.to_be_bytes());
    body[2..].copy_from_slice(&(0xE000 | pmt_pid).to_be_bytes());
    write_section(out, TABLE_PAT, transport_stream_id, 0, &body);
}

/// One elementary stream of a PMT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PmtStream {
    /// `stream_type`.
    pub stream_type: u8,
    /// `elementary_PID`.
    pub pid: u16,
    /// The ES_info descriptors, raw (tag, length, payload)*.
    pub descriptors: Vec<u8>,
}

/// A program map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pmt {
    /// `program_number`.
    pub program_number: u16,
    /// `version_number`.
    pub version: u8,
    /// `PCR_PID`.
    pub pcr_pid: u16,
    /// The elementary streams, in section order.
    pub streams: Vec<PmtStream>,
}

/// Builds a PMT section.
pub fn build_pmt(out: &mut BytesMut, pmt: &Pmt) {
    let mut body = BytesMut::new();
    body.put_u16(0xE000 | pmt.pcr_pid);
    body.put_u16(0xF000); // program_info_length 0
    for s in &pmt.streams {
        body.put_u8(s.stream_type);
        body.put_u16(0xE000 | s.pid);
        body.put_u16(0xF000 | (s.descriptors.len() as u16 & 0x3FF));
        body.extend_from_slice(&s.descriptors);
    }
    write_section(out, TABLE_PMT, pmt.program_number, pmt.version, &body);
}

/// Checks the CRC and the long-form header of a complete section and returns
/// `(table_id, table_id_extension, version, body)`.
fn open_section(sec: &[u8]) -> Result<(u8, u16, u8, &[u8]), TsError> {
    if sec.len() < 12 {
        return Err(TsError::Psi("section shorter than its header and CRC"));
    }
    if crc32_mpeg2(sec) != 0 {
        return Err(TsError::Crc);
    }
    if sec[1] & 0x80 == 0 {
        return Err(TsError::Psi("section_syntax_indicator 0"));
    }
    let id = u16::from_be_bytes([sec[3], sec[4]]);
    let version = (sec[5] >> 1) & 0x1F;
    Ok((sec[0], id, version, &sec[8..sec.len() - 4]))
}

/// Parses a PAT section: `(program_number, PMT PID)` of every program
/// (network PIDs, program 0, are skipped).
pub fn parse_pat(sec: &[u8]) -> Result<Vec<(u16, u16)>, TsError> {
    let (table, _, _, body) = open_section(sec)?;
    if table != TABLE_PAT {
        return Err(TsError::Psi("PAT table_id"));
    }
    Ok(body
        .chunks_exact(4)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u16::from_be_bytes([c[2], c[3]]) & 0x1FFF,
            )
        })
        .filter(|&(p, _)| p != 0)
        .collect())
}

/// Parses a PMT section.
pub fn parse_pmt(sec: &[u8]) -> Result<Pmt, TsError> {
    let (table, program_number, version, body) = open_section(sec)?;
    if table != TABLE_PMT {
        return Err(TsError::Psi("PMT table_id"));
    }
    if body.len() < 4 {
        return Err(TsError::Psi("PMT shorter than its header"));
    }
    let pcr_pid = u16::from_be_bytes([body[0], body[1]]) & 0x1FFF;
    let info_len = usize::from(u16::from_be_bytes([body[2], body[3]]) & 0x3FF);
    let mut pos = 4 + info_len;
    let mut streams = Vec::new();
    while pos + 5 <= body.len() {
        let stream_type = body[pos];
        let pid = u16::from_be_bytes([body[pos + 1], body[pos + 2]]) & 0x1FFF;
        let es_len = usize::from(u16::from_be_bytes([body[pos + 3], body[pos + 4]]) & 0x3FF);
        pos += 5;
        let descriptors = body
            .get(pos..pos + es_len)
            .ok_or(TsError::Psi("ES_info_length beyond the section"))?
            .to_vec();
        pos += es_len;
        streams.push(PmtStream {
            stream_type,
            pid,
            descriptors,
        });
    }
    Ok(Pmt {
        program_number,
        version,
        pcr_pid,
        streams,
    })
}

/// Iterates over `(tag, payload)` of a descriptor loop; stops at a truncated one.
pub fn descriptors(d: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 0;
    core::iter::from_fn(move || {
        if pos + 2 > d.len() {
            return None;
        }
        let tag = d[pos];
        let len = usize::from(d[pos + 1]);
        let body = d.get(pos + 2..pos + 2 + len)?;
        pos += 2 + len;
        Some((tag, body))
    })
}

/// Reassembles PSI sections from the payloads of one PID's packets.
#[derive(Clone, Debug, Default)]
pub struct SectionAssembler {
    buf: Vec<u8>,
    /// Whether `buf` holds the start of a section.
    in_section: bool,
}

impl SectionAssembler {
    /// Feeds one packet's payload; `pusi` is its payload_unit_start_indicator.
    /// Complete sections are passed to `on_section`.
    pub fn push(&mut self, pusi: bool, payload: &[u8], mut on_section: impl FnMut(&[u8])) {
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = data.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                self.reset();
                return;
            }
            if self.in_section {
                self.buf.extend_from_slice(&rest[..pointer]);
                self.drain(&mut on_section);
            }
            self.reset();
            self.in_section = true;
            data = &rest[pointer..];
        } else if !self.in_section {
            return;
        }
        if self.buf.len() + data.len() > 3 + MAX_SECTION_LENGTH + PACKET_PAYLOAD {
            self.reset();
            return;
        }
        self.buf.extend_from_slice(data);
        self.drain(&mut on_section);
    }

    /// Emits every complete section at the front of the buffer.
    fn drain(&mut self, on_section: &mut impl FnMut(&[u8])) {
        loop {
            if matches!(self.buf.first(), None | Some(0xFF)) {
                // Stuffing: nothing more in this unit.
                if !self.buf.is_empty() {
                    self.reset();
                }
                return;
            }
            if self.buf.len() < 3 {
                return;
            }
            let len = usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]) & 0xFFF);
            if len > MAX_SECTION_LENGTH + 3 {
                self.reset();
                return;
            }
            if self.buf.len() < 3 + len {
                return;
            }
            on_section(&self.buf[..3 + len]);
            self.buf.drain(..3 + len);
        }
    }

    /// Drops a partial section (after a continuity error).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.in_section = false;
    }
}

const PACKET_PAYLOAD: usize = 184;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pat_matches_ffmpeg() {
        let mut b = BytesMut::new();
        build_pat(&mut b, 1, 1, 0x1000);
        assert_eq!(
            &b[..],
            &[
                0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1,
                0x04, 0xb2
            ]
        );
        assert_eq!(parse_pat(&b).unwrap(), [(1, 0x1000)]);
    }

    #[test]
    fn pmt_round_trip_and_crc_check() {
        let pmt = Pmt {
            program_number: 1,
            version: 3,
            pcr_pid: 0x100,
            streams: alloc::vec![
                PmtStream {
                    stream_type: 0x1B,
                    pid: 0x100,
                    descriptors: alloc::vec![]
                },
                PmtStream {
                    stream_type: 0x06,
                    pid: 0x101,
                    descriptors: alloc::vec![0x05, 4, b'O', b'p', b'u', b's']
                },
            ],
        };
        let mut b = BytesMut::new();
        build_pmt(&mut b, &pmt);
        assert_eq!(parse_pmt(&b).unwrap(), pmt);
        let mut bad = b.to_vec();
        bad[10] ^= 1;
        assert_eq!(parse_pmt(&bad), Err(TsError::Crc));
    }

    #[test]
    fn sections_across_packets_and_several_per_packet() {
        let mut pat = BytesMut::new();
        build_pat(&mut pat, 1, 1, 0x1000);
        let mut a = SectionAssembler::default();
        let mut got = alloc::vec::Vec::new();
        // Section split in two packets, with a pointer field of 0.
        let mut p1 = alloc::vec![0u8];
        p1.extend_from_slice(&pat[..5]);
        a.push(true, &p1, |s| got.push(s.to_vec()));
        assert!(got.is_empty());
        a.push(false, &pat[5..], |s| got.push(s.to_vec()));
        assert_eq!(got.len(), 1);
        // Two sections back to back, then stuffing.
        let mut p = alloc::vec![0u8];
        p.extend_from_slice(&pat);
        p.extend_from_slice(&pat);
        p.extend_from_slice(&[0xFF; 20]);
        a.push(true, &p, |s| got.push(s.to_vec()));
        assert_eq!(got.len(), 3);
    }
}
