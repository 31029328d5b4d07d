//! H.265 over RTP, RFC 7798: the two-byte payload header (§1.1.4),
//! single NAL unit packets (§4.4.1), aggregation packets (AP, §4.4.2) and
//! fragmentation units (FU, §4.4.3), without DONL fields
//! (`sprop-max-don-diff` 0), and the `a=fmtp` parameters `sprop-vps`,
//! `sprop-sps`, `sprop-pps` (§7.1).
//!
//! We send single NAL unit packets and FUs; we read APs too. PACI packets
//! (§4.4.4) are refused packet by packet. Parameter sets seen in band
//! update the `hvcC` (a VPS or PPS replaces the one with its id, an SPS
//! replaces the SPS) and stay in their access unit.

use arcly_core::frame::TrackInfo;
use arcly_core::media::codec::h264::MAX_PARAMETER_SETS;
use arcly_core::media::codec::h265::{
    is_irap, nal_type, HevcConfig, Pps, Sps, NAL_AUD, NAL_PPS, NAL_SPS, NAL_VPS,
};
use bytes::Bytes;

use super::access_unit::{NalAssembler, NalKind};
use super::h264::{nal_units, replace_by_id};
use super::{base64_encode, base64_nals, fmtp_param, shown, AccessUnit, PacketSink, PayloadError};
use crate::rtp::RtpPacket;

/// Aggregation packet (§4.4.2).
const AP: u8 = 48;
/// Fragmentation unit (§4.4.3).
const FU: u8 = 49;
/// Payload content information (§4.4.4).
const PACI: u8 = 50;

/// What a NAL unit of type `t` is; `body`: its first byte after the
/// header (a slice segment is the first of its picture when
/// `first_slice_segment_in_pic_flag`, its first bit, is set).
fn kind(t: u8, body: Option<u8>) -> NalKind {
    let vcl = t < 32;
    NalKind {
        key: is_irap(t),
        vcl,
        first: !vcl || body.is_some_and(|b| b & 0x80 != 0),
    }
}

/// The VPS, SPS and PPS known.
#[derive(Debug, Default)]
struct ParameterSets {
    vps: Vec<(u32, Bytes)>,
    sps: Option<Bytes>,
    pps: Vec<(u32, Bytes)>,
}

impl ParameterSets {
    /// Takes a VPS, SPS or PPS (one that parses); whether the set changed.
    fn update(&mut self, nal: &[u8]) -> bool {
        match nal_type(nal) {
            // vps_video_parameter_set_id: the first 4 bits after the header.
            NAL_VPS if nal.len() > 2 => replace_by_id(&mut self.vps, u32::from(nal[2] >> 4), nal),
            NAL_SPS if Sps::parse(nal).is_ok() => {
                if self.sps.as_deref() == Some(nal) {
                    return false;
                }
                self.sps = Some(Bytes::copy_from_slice(nal));
                true
            }
            NAL_PPS => match Pps::parse(nal) {
                Ok(p) => replace_by_id(&mut self.pps, p.id, nal),
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// The `hvcC`, once there are a VPS, an SPS and a PPS.
    fn config(&self) -> Option<Bytes> {
        let sps = self.sps.clone()?;
        if self.vps.is_empty() || self.pps.is_empty() {
            return None;
        }
        let vps = self.vps.iter().map(|(_, n)| n.clone()).collect();
        let pps = self.pps.iter().map(|(_, n)| n.clone()).collect();
        HevcConfig::from_parameter_sets(vps, vec![sps], pps)
            .ok()
            .map(|c| c.to_bytes())
    }
}

/// Access units of an H.265 stream out of its RTP packets.
#[derive(Debug)]
pub struct H265Depacketizer {
    au: NalAssembler,
    params: ParameterSets,
    config: Option<Bytes>,
    changed: bool,
}

impl H265Depacketizer {
    /// A depacketizer for the stream `fmtp` describes: `sprop-vps`,
    /// `sprop-sps` and `sprop-pps` give the first configuration; a
    /// `sprop-max-don-diff` above 0 (DONL fields, a decoding order unlike
    /// the transmission order) is refused.
    pub fn new(fmtp: &[(String, String)]) -> Result<Self, PayloadError> {
        if let Some(v) = fmtp_param(fmtp, "sprop-max-don-diff") {
            if v != "0" {
                return Err(PayloadError::Parameter {
                    name: "sprop-max-don-diff",
                    value: shown(v),
                    reason: "decoding order numbers (DONL) are not supported",
                });
            }
        }
        let mut params = ParameterSets::default();
        for name in ["sprop-vps", "sprop-sps", "sprop-pps"] {
            if let Some(sets) = fmtp_param(fmtp, name) {
                for nal in base64_nals(sets, MAX_PARAMETER_SETS) {
                    params.update(&nal);
                }
            }
        }
        let config = params.config();
        Ok(H265Depacketizer {
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
        if p.len() < 2 {
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "a payload shorter than its 2-byte header",
            });
        }
        match nal_type(p) {
            0..=47 => self.nal(p.clone(), seq),
            AP => {
                let mut pos = 2;
                while pos < p.len() {
                    if p.len() - pos < 2 {
                        return Err(PayloadError::Malformed {
                            sequence: seq,
                            what: "an AP cut inside a NAL unit size",
                        });
                    }
                    let size = usize::from(u16::from_be_bytes([p[pos], p[pos + 1]]));
                    pos += 2;
                    if size < 2 || size > p.len() - pos {
                        return Err(PayloadError::Malformed {
                            sequence: seq,
                            what: "an AP NAL unit size below 2 or past the packet",
                        });
                    }
                    self.nal(p.slice(pos..pos + size), seq)?;
                    pos += size;
                }
                if pos == 2 {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an empty AP",
                    });
                }
                Ok(())
            }
            FU => {
                let Some(&fu) = p.get(2) else {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an FU without its FU header",
                    });
                };
                let (start, end, t) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x3F);
                if start && end {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an FU with both its start and end bits set",
                    });
                }
                if t >= AP {
                    return Err(PayloadError::Malformed {
                        sequence: seq,
                        what: "an FU of a NAL unit type reserved for packets",
                    });
                }
                let data = p.slice(3..);
                if start {
                    if t == NAL_AUD {
                        self.au.split();
                    }
                    // The NAL unit header: F, LayerId and TID of the payload
                    // header, the type of the FU header.
                    let header = [(p[0] & 0x81) | (t << 1), p[1]];
                    let k = kind(t, data.first().copied());
                    return self.au.fragment_start(&header, data, k, seq);
                }
                if self.au.fragment(data, end, seq)? && matches!(t, NAL_VPS | NAL_SPS | NAL_PPS) {
                    if let Some(nal) = self.au.last_nal() {
                        self.parameter_set(&nal);
                    }
                }
                Ok(())
            }
            PACI => Err(PayloadError::UnsupportedPacket {
                sequence: seq,
                what: "a PACI packet",
                packet_type: PACI,
            }),
            _ => Err(PayloadError::Malformed {
                sequence: seq,
                what: "a reserved NAL unit type (51..=63)",
            }),
        }
    }

    /// A whole NAL unit.
    fn nal(&mut self, nal: Bytes, seq: u16) -> Result<(), PayloadError> {
        let t = nal_type(&nal);
        if t >= AP {
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "an aggregated NAL unit of type 48..=63",
            });
        }

        if matches!(t, NAL_VPS | NAL_SPS | NAL_PPS) {
            self.parameter_set(&nal);
        }
        let k = kind(t, nal.get(2).copied());
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

    /// The `hvcC`, once a VPS, an SPS and a PPS are known.
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

/// Packets of one access unit: a NAL unit that fits goes alone, a larger
/// one in FU fragments; the marker on the last packet.
pub(crate) fn packetize(
    timestamp: u32,
    payload: &Bytes,
    max_payload: usize,
    sink: &mut PacketSink<'_>,
) -> Result<(), PayloadError> {
    let nals = nal_units(timestamp, payload)?;
    if nals.iter().any(|n| n.len() < 2) {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an H.265 NAL unit shorter than its 2-byte header",
        });
    }
    if nals.iter().any(|n| nal_type(n) >= AP) {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an H.265 NAL unit of type 48..=63 (reserved for RTP)",
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
        let header = [(n[0] & 0x81) | (FU << 1), n[1]];
        let t = nal_type(n);
        let body = &n[2..];
        let chunk = max_payload - 3;
        let mut off = 0;
        while off < body.len() {
            let end = (off + chunk).min(body.len());
            let mut fu = t;
            if off == 0 {
                fu |= 0x80;
            }
            if end == body.len() {
                fu |= 0x40;
            }
            sink.emit(
                last && end == body.len(),
                &[&header, &[fu], &body[off..end]],
            );
            off = end;
        }
    }
    Ok(())
}

/// `sprop-vps=..;sprop-sps=..;sprop-pps=..` of the track's `hvcC`, or
/// `None` when it has no SPS (the parameter sets then come in band).
pub(crate) fn fmtp(track: &TrackInfo) -> Option<String> {
    let c = HevcConfig::parse(&track.config).ok()?;
    c.nals(NAL_SPS).next()?;
    let list = |t: u8| -> String {
        c.nals(t)
            .map(|n| base64_encode(n))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut parts = Vec::new();
    for (name, t) in [
        ("sprop-vps", NAL_VPS),
        ("sprop-sps", NAL_SPS),
        ("sprop-pps", NAL_PPS),
    ] {
        let v = list(t);
        if !v.is_empty() {
            parts.push(format!("{name}={v}"));
        }
    }
    Some(parts.join(";"))
}
