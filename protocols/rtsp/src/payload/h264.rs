//! H.264 over RTP, RFC 6184: single NAL unit packets (§5.6), STAP-A
//! aggregation (§5.7.1) and FU-A fragmentation (§5.8) of the
//! non-interleaved mode (packetization-mode 0 and 1, §6.2–6.3), and the
//! `a=fmtp` parameters of §8.1 (`packetization-mode`, `profile-level-id`,
//! `sprop-parameter-sets`).
//!
//! We send single NAL unit packets and FU-A; we read STAP-A too. The
//! interleaved mode's STAP-B, MTAP and FU-B are refused packet by packet.
//! Parameter sets seen in band update the `avcC` and stay in their access
//! unit.

use arcly_core::frame::TrackInfo;
use arcly_core::media::codec::bits::{unescape_rbsp, BitReader};
use arcly_core::media::codec::h264::{
    nal_type, AvcConfig, MAX_PARAMETER_SETS, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS,
};
use arcly_core::media::codec::nal::LengthPrefixedNals;
use bytes::Bytes;

use super::access_unit::{NalAssembler, NalKind};
use super::{
    base64_encode, base64_nals, fmtp_param, shown, AccessUnit, PacketSink, PayloadError,
    MAX_AU_NALS,
};
use crate::rtp::RtpPacket;

/// Single-time aggregation packet (§5.7.1).
const STAP_A: u8 = 24;
/// Single-time aggregation packet with DON (interleaved mode).
const STAP_B: u8 = 25;
/// Multi-time aggregation packet, 16-bit offsets.
const MTAP16: u8 = 26;
/// Multi-time aggregation packet, 24-bit offsets.
const MTAP24: u8 = 27;
/// Fragmentation unit (§5.8).
const FU_A: u8 = 28;
/// Fragmentation unit with DON (interleaved mode).
const FU_B: u8 = 29;

/// What a NAL unit of type `t` is; `body`: its first byte after the
/// header (a slice is the first of its picture when `first_mb_in_slice`,
/// the first `ue(v)`, is 0: a leading 1 bit).
fn kind(t: u8, body: Option<u8>) -> NalKind {
    let vcl = (1..=5).contains(&t);
    NalKind {
        key: t == NAL_IDR,
        vcl,
        first: !vcl || body.is_some_and(|b| b & 0x80 != 0),
    }
}

/// The SPS and PPS known, by id.
#[derive(Debug, Default)]
struct ParameterSets {
    sps: Vec<(u32, Bytes)>,
    pps: Vec<(u32, Bytes)>,
}

impl ParameterSets {
    /// Takes an SPS or PPS (one whose id reads); whether the set changed.
    fn update(&mut self, nal: &[u8]) -> bool {
        let list = match nal_type(nal) {
            NAL_SPS if nal.len() >= 4 => &mut self.sps,
            NAL_PPS => &mut self.pps,
            _ => return false,
        };
        let Some(id) = parameter_set_id(nal) else {
            return false;
        };
        replace_by_id(list, id, nal)
    }

    /// The `avcC`, once there is an SPS and a PPS.
    fn config(&self) -> Option<Bytes> {
        if self.sps.is_empty() || self.pps.is_empty() {
            return None;
        }
        let sps = self.sps.iter().map(|(_, n)| n.clone()).collect();
        let pps = self.pps.iter().map(|(_, n)| n.clone()).collect();
        AvcConfig::from_parameter_sets(sps, pps)
            .ok()
            .map(|c| c.to_bytes())
    }
}

/// The `seq_parameter_set_id` of an SPS (§7.3.2.1.1: after the profile,
/// constraint and level bytes) or the `pic_parameter_set_id` of a PPS
/// (§7.3.2.2: first). Only the id is read, so that an SPS the kernel's
/// parser does not take in full still configures the stream.
fn parameter_set_id(nal: &[u8]) -> Option<u32> {
    let (skip, max) = match nal_type(nal) {
        NAL_SPS => (3, 31),
        NAL_PPS => (0, 255),
        _ => return None,
    };
    let head = nal.get(1..nal.len().min(24))?;
    let rbsp = unescape_rbsp(head);
    let mut r = BitReader::new(rbsp.get(skip..)?);
    r.read_ue().ok().filter(|id| *id <= max)
}

/// Puts `nal` in `list` in place of the one with the same id (or after
/// the others, up to [`MAX_PARAMETER_SETS`]); whether `list` changed.
pub(crate) fn replace_by_id(list: &mut Vec<(u32, Bytes)>, id: u32, nal: &[u8]) -> bool {
    match list.iter().position(|(i, _)| *i == id) {
        Some(k) if list[k].1[..] == *nal => false,
        Some(k) => {
            list[k].1 = Bytes::copy_from_slice(nal);
            true
        }
        None if list.len() < MAX_PARAMETER_SETS => {
            list.push((id, Bytes::copy_from_slice(nal)));
            true
        }
        None => false,
    }
}

/// Access units of an H.264 stream out of its RTP packets.
#[derive(Debug)]
pub struct H264Depacketizer {
    au: NalAssembler,
    params: ParameterSets,
    config: Option<Bytes>,
    changed: bool,
}

impl H264Depacketizer {
    /// A depacketizer for the stream `fmtp` describes: `sprop-parameter-sets`
    /// gives the first configuration (entries that do not decode are
    /// skipped: in-band parameter sets still come); `packetization-mode=2`
    /// (interleaved) is refused.
    pub fn new(fmtp: &[(String, String)]) -> Result<Self, PayloadError> {
        if let Some(mode) = fmtp_param(fmtp, "packetization-mode") {
            match mode {
                "0" | "1" => {}
                "2" => {
                    return Err(PayloadError::Parameter {
                        name: "packetization-mode",
                        value: shown(mode),
                        reason: "the interleaved mode is not supported",
                    })
                }
                _ => {
                    return Err(PayloadError::Parameter {
                        name: "packetization-mode",
                        value: shown(mode),
                        reason: "not 0, 1 or 2",
                    })
                }
            }
        }
        let mut params = ParameterSets::default();
        if let Some(sets) = fmtp_param(fmtp, "sprop-parameter-sets") {
            for nal in base64_nals(sets, 2 * MAX_PARAMETER_SETS) {
                params.update(&nal);
            }
        }
        let config = params.config();
        Ok(H264Depacketizer {
            au: NalAssembler::new(),
            params,
            changed: config.is_some(),
            config,
        })
    }

    /// One packet in sequence order (see [`super::Depacketizer::push`]).
    pub fn push(
        &mut self,
        pkt: &RtpPacket,
        timestamp: i64,
        lost: bool,
    ) -> Result<(), PayloadError> {
        self.au.begin(timestamp, lost);
        let r = self.read(pkt);
        if r.is_err() {
            self.au.fail();
        }
        if pkt.header.marker {
            self.au.finish();
        }
        r
    }

    fn read(&mut self, pkt: &RtpPacket) -> Result<(), PayloadError> {
        let seq = pkt.header.sequence;
        let p = &pkt.payload;
        let Some(&first) = p.first() else {
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "an empty payload",
            });
        };
        match first & 0x1F {
            1..=23 => self.nal(p.clone(), seq),
            STAP_A => {
                let mut pos = 1;
                while pos < p.len() {
                    if p.len() - pos < 2 {
                        return Err(PayloadError::Malformed {
                            sequence: seq,
                            what: "a STAP-A cut inside a NAL unit size",
                        });
                    }
                    let size = usize::from(u16::from_be_bytes([p[pos], p[pos + 1]]));
                    pos += 2;
                    if size == 0 || size > p.len() - pos {
                        return Err(PayloadError::Malformed {
                            sequence: seq,
                            what: "a STAP-A NAL unit size of 0 or past the packet",
                        });
                    }
                    self.nal(p.slice(pos..pos + size), seq)?;
                    pos += size;
                }
                if pos == 1 {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an empty STAP-A",
                    });
                }
                Ok(())
            }
            FU_A => {
                let Some(&fu) = p.get(1) else {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an FU-A without its FU header",
                    });
                };
                let (start, end, t) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1F);
                if start && end {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an FU-A with both its start and end bits set",
                    });
                }
                if !(1..=23).contains(&t) {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an FU-A of a NAL unit type reserved for packets",
                    });
                }
                let data = p.slice(2..);
                if start {
                    if t == NAL_AUD {
                        self.au.split();
                    }
                    let k = kind(t, data.first().copied());
                    return self.au.fragment_start(&[(first & 0xE0) | t], data, k, seq);
                }
                if self.au.fragment(data, end, seq)? && matches!(t, NAL_SPS | NAL_PPS) {
                    if let Some(nal) = self.au.last_nal() {
                        self.parameter_set(&nal);
                    }
                }
                Ok(())
            }
            t @ (STAP_B | MTAP16 | MTAP24 | FU_B) => Err(PayloadError::UnsupportedPacket {
                sequence: seq,
                what: "an interleaved-mode packet (STAP-B, MTAP, FU-B)",
                packet_type: t,
            }),
            _ => Err(PayloadError::Malformed {
                sequence: seq,
                what: "a reserved NAL unit type (0, 30 or 31)",
            }),
        }
    }

    /// A whole NAL unit.
    fn nal(&mut self, nal: Bytes, seq: u16) -> Result<(), PayloadError> {
        let t = nal_type(&nal);
        if t == 0 || t >= STAP_A {
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "an aggregated NAL unit of type 0 or 24..=31",
            });
        }

        if matches!(t, NAL_SPS | NAL_PPS) {
            self.parameter_set(&nal);
        }
        let k = kind(t, nal.get(1).copied());
        if t == NAL_AUD {
            return self.au.delimiter(nal, k, seq);
        }
        self.au.nal(nal, k, seq)
    }

    fn parameter_set(&mut self, nal: &[u8]) {
        if self.params.update(nal) {
            let c = self.params.config();
            if c.is_some() && c != self.config {
                self.config = c;
                self.changed = true;
            }
        }
    }

    /// The next access unit.
    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.au.pop()
    }

    /// The `avcC`, once an SPS and a PPS are known.
    pub fn config(&self) -> Option<Bytes> {
        self.config.clone()
    }

    /// Whether the configuration changed since the last call.
    pub fn take_config_changed(&mut self) -> bool {
        core::mem::take(&mut self.changed)
    }

    /// Access units dropped.
    pub fn dropped(&self) -> u64 {
        self.au.dropped()
    }
}

/// The NAL units of a canonical access unit, checked before any packet is
/// written.
pub(crate) fn nal_units(timestamp: u32, payload: &Bytes) -> Result<Vec<Bytes>, PayloadError> {
    let mut nals = Vec::new();
    for n in LengthPrefixedNals::new(payload.clone()) {
        let n = n.map_err(|_| PayloadError::Frame {
            timestamp,
            what: "not 4-byte length-prefixed NAL units",
        })?;
        if n.is_empty() {
            continue;
        }
        if nals.len() >= MAX_AU_NALS {
            return Err(PayloadError::Frame {
                timestamp,
                what: "more NAL units than an access unit may hold",
            });
        }
        nals.push(n);
    }
    Ok(nals)
}

/// Packets of one access unit: a NAL unit that fits goes alone, a larger
/// one in FU-A fragments; the marker on the last packet.
pub(crate) fn packetize(
    timestamp: u32,
    payload: &Bytes,
    max_payload: usize,
    sink: &mut PacketSink<'_>,
) -> Result<(), PayloadError> {
    let nals = nal_units(timestamp, payload)?;
    if nals.iter().any(|n| matches!(nal_type(n), 0 | 24..=31)) {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an H.264 NAL unit of type 0 or 24..=31 (reserved for RTP)",
        });
    }
    let count = nals.len();
    for (i, n) in nals.iter().enumerate() {
        let last = i + 1 == count;
        if n.len() <= max_payload {
            sink.emit(last, &[n]);
            continue;
        }
        // Longer than max_payload >= 52 bytes: at least two fragments.
        let indicator = (n[0] & 0xE0) | FU_A;
        let t = n[0] & 0x1F;
        let body = &n[1..];
        let chunk = max_payload - 2;
        let mut off = 0;
        while off < body.len() {
            let end = (off + chunk).min(body.len());
            let mut header = t;
            if off == 0 {
                header |= 0x80;
            }
            if end == body.len() {
                header |= 0x40;
            }
            sink.emit(
                last && end == body.len(),
                &[&[indicator, header], &body[off..end]],
            );
            off = end;
        }
    }
    Ok(())
}

/// `packetization-mode=1;profile-level-id=..;sprop-parameter-sets=..`
/// (the last two when the track's `avcC` has an SPS).
pub(crate) fn fmtp(track: &TrackInfo) -> String {
    let mut s = String::from("packetization-mode=1");
    let Ok(c) = AvcConfig::parse(&track.config) else {
        return s;
    };
    let Some(sps) = c.sps.first() else { return s };
    let (p, k, l) = match sps.get(1..4) {
        Some(&[p, k, l]) => (p, k, l),
        _ => (c.profile, c.compatibility, c.level),
    };
    s.push_str(&format!(";profile-level-id={p:02x}{k:02x}{l:02x}"));
    let sets: Vec<String> = c
        .sps
        .iter()
        .chain(c.pps.iter())
        .map(|n| base64_encode(n))
        .collect();
    s.push_str(";sprop-parameter-sets=");
    s.push_str(&sets.join(","));
    s
}
