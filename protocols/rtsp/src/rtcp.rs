//! RTCP (RFC 3550 §6): the sender report that maps a track's RTP clock to
//! wall-clock (NTP) time, so a player lines up audio and video; the
//! receiver report a receiver owes its sender; BYE. Compound packets are
//! read one by one; what is not a report is skipped.

use bytes::{BufMut, Bytes, BytesMut};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What a sender report says: at wall-clock `ntp` (64-bit NTP format) the
/// sender's RTP clock read `rtp_time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// NTP time stamp (seconds since 1900 in the high 32 bits).
    pub ntp: u64,
    /// The RTP time stamp at `ntp`.
    pub rtp_time: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

impl SenderReport {
    /// The NTP time in microseconds since the Unix epoch (saturating for
    /// times before 1970).
    pub fn unix_micros(&self) -> u64 {
        ntp_to_unix_micros(self.ntp)
    }
}

/// Microseconds since the Unix epoch of a 64-bit NTP time stamp.
pub fn ntp_to_unix_micros(ntp: u64) -> u64 {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let frac = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    secs * 1_000_000 + frac
}

/// The 64-bit NTP time stamp of Unix microseconds.
pub fn unix_micros_to_ntp(us: u64) -> u64 {
    let secs = us / 1_000_000 + NTP_UNIX_OFFSET;
    let frac = ((us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// Reads the sender reports of a compound RTCP packet; anything else (RR,
/// SDES, BYE, APP, a truncated tail) is skipped.
pub fn sender_reports(data: &[u8]) -> impl Iterator<Item = SenderReport> + '_ {
    let mut rest = data;
    core::iter::from_fn(move || loop {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return None;
        }
        let (pkt, tail) = rest.split_at(len);
        rest = tail;
        if pkt[1] == 200 && pkt.len() >= 28 {
            let u32_at =
                |i: usize| u32::from_be_bytes([pkt[i], pkt[i + 1], pkt[i + 2], pkt[i + 3]]);
            return Some(SenderReport {
                ssrc: u32_at(4),
                ntp: (u64::from(u32_at(8)) << 32) | u64::from(u32_at(12)),
                rtp_time: u32_at(16),
                packets: u32_at(20),
                octets: u32_at(24),
            });
        }
    })
}

/// Whether a compound packet holds a BYE.
pub fn has_bye(data: &[u8]) -> bool {
    let mut rest = data;
    while rest.len() >= 4 && rest[0] >> 6 == 2 {
        if rest[1] == 203 {
            return true;
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            break;
        }
        rest = &rest[len..];
    }
    false
}

/// A sender report with an SDES CNAME (the compound packet RFC 3550 §6.1
/// requires).
pub fn write_sender_report(sr: &SenderReport, cname: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_u8(0x80);
    out.put_u8(200);
    out.put_u16(6);
    out.put_u32(sr.ssrc);
    out.put_u64(sr.ntp);
    out.put_u32(sr.rtp_time);
    out.put_u32(sr.packets);
    out.put_u32(sr.octets);
    write_sdes(&mut out, sr.ssrc, cname);
    out.freeze()
}

/// A receiver report about `source` (one report block with what we know:
/// the extended highest sequence number received and the cumulative loss),
/// with an SDES CNAME.
pub fn write_receiver_report(
    ssrc: u32,
    source: u32,
    highest_seq: u32,
    lost: u32,
    cname: &str,
) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_u8(0x81);
    out.put_u8(201);
    out.put_u16(7);
    out.put_u32(ssrc);
    out.put_u32(source);
    out.put_u32(lost.min(0x7f_ffff));
    out.put_u32(highest_seq);
    out.put_u32(0); // jitter
    out.put_u32(0); // last SR
    out.put_u32(0); // delay since last SR
    write_sdes(&mut out, ssrc, cname);
    out.freeze()
}

/// A BYE for `ssrc`.
pub fn write_bye(ssrc: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(8);
    out.put_u8(0x81);
    out.put_u8(203);
    out.put_u16(1);
    out.put_u32(ssrc);
    out.freeze()
}

fn write_sdes(out: &mut BytesMut, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, CNAME item (type, length, text), END, padding to 32 bits.
    let body = 4 + 2 + name.len() + 1;
    let padded = body.div_ceil(4) * 4;
    out.put_u8(0x81);
    out.put_u8(202);
    out.put_u16((padded / 4) as u16);
    out.put_u32(ssrc);
    out.put_u8(1);
    out.put_u8(name.len() as u8);
    out.put_slice(name);
    out.put_bytes(0, padded - body + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_report_round_trips_in_a_compound_packet() {
        let sr = SenderReport {
            ssrc: 7,
            ntp: unix_micros_to_ntp(1_700_000_000_250_000),
            rtp_time: 90_000,
            packets: 3,
            octets: 300,
        };
        let data = write_sender_report(&sr, "arcly");
        assert_eq!(data.len() % 4, 0);
        let got: Vec<_> = sender_reports(&data).collect();
        assert_eq!(got, [sr]);
        assert_eq!(got[0].unix_micros(), 1_700_000_000_250_000);
        let rr = write_receiver_report(1, 7, 100, 2, "x");
        assert_eq!(sender_reports(&rr).count(), 0);
        assert!(!has_bye(&rr));
        let mut both = rr.to_vec();
        both.extend_from_slice(&write_bye(1));
        assert!(has_bye(&both));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            let _ = sender_reports(&data).count();
            let _ = has_bye(&data);
        }
    }
}
