//! RTP data packets (RFC 3550 §5.1 fixed header, §5.3.1 header extension,
//! padding per §5.1 `P`), the extended 32-bit media clock and 16-bit
//! sequence number (the "nearest to the previous" rule of RFC 3550
//! Appendix A.1), and a reorder buffer that puts UDP packets back in
//! sequence order, marking gaps, with the misorder/resync rule of
//! Appendix A.1.
//!
//! Nothing here reads a clock: the reorder buffer takes the caller's time
//! in microseconds.

use std::collections::{BTreeMap, VecDeque};

use arcly_core::time::{Wrap32, WrapExtender};
use bytes::{BufMut, Bytes, BytesMut};

/// The fixed part of an RTP header (RFC 3550 §5.1), as we write it and as
/// far as a receiver needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// `M`: for video the last packet of an access unit, for audio the
    /// first packet after silence (RFC 3551 §4.1); every payload format
    /// here says what it means.
    pub marker: bool,
    /// `PT` (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The media time stamp, in the payload format's clock.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// The size of the fixed header without CSRCs.
    pub const LEN: usize = 12;

    /// Writes the 12-byte fixed header (version 2, no padding, no
    /// extension, no CSRC).
    pub fn write(&self, out: &mut BytesMut) {
        out.reserve(Self::LEN);
        out.put_u8(0x80);
        out.put_u8((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        out.put_u16(self.sequence);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
    }
}

/// Why a datagram is not an RTP packet we can read.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the fixed header, its CSRCs or its extension.
    #[error("RTP packet of {len} bytes is shorter than its header ({need} bytes)")]
    Truncated {
        /// The packet's length.
        len: usize,
        /// The length its header says it has at least.
        need: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {0}, not 2")]
    Version(u8),
    /// The padding count is zero or longer than the payload.
    #[error(
        "RTP packet {sequence}: padding of {padding} bytes with {available} bytes after the header"
    )]
    Padding {
        /// The packet's sequence number.
        sequence: u16,
        /// The padding count in the last byte.
        padding: usize,
        /// Bytes after the header, padding included.
        available: usize,
    },
}

/// One RTP packet: its header and its payload (a slice of the datagram,
/// CSRCs, extension and padding removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    /// The fixed header.
    pub header: RtpHeader,
    /// The payload.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses one packet: skips CSRCs and a header extension, strips
    /// padding; errors on a version other than 2, on truncation and on
    /// padding longer than the payload. The payload is a slice of `data`.
    pub fn parse(data: Bytes) -> Result<RtpPacket, RtpError> {
        let len = data.len();
        if len < RtpHeader::LEN {
            return Err(RtpError::Truncated {
                len,
                need: RtpHeader::LEN,
            });
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padded = data[0] & 0x20 != 0;
        let extended = data[0] & 0x10 != 0;
        let csrcs = usize::from(data[0] & 0x0F);
        let header = RtpHeader {
            marker: data[1] & 0x80 != 0,
            payload_type: data[1] & 0x7F,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        };
        let mut start = RtpHeader::LEN + 4 * csrcs;
        if extended {
            // §5.3.1: 16 bits defined by profile, 16 bits of length in
            // 32-bit words, not counting this 4-byte head.
            if len < start + 4 {
                return Err(RtpError::Truncated {
                    len,
                    need: start + 4,
                });
            }
            let words = usize::from(u16::from_be_bytes([data[start + 2], data[start + 3]]));
            start += 4 + 4 * words;
        }
        if len < start {
            return Err(RtpError::Truncated { len, need: start });
        }
        let mut end = len;
        if padded {
            // The last byte counts the padding, itself included (§5.1).
            let padding = usize::from(data[len - 1]);
            if padding == 0 || padding > len - start {
                return Err(RtpError::Padding {
                    sequence: header.sequence,
                    padding,
                    available: len - start,
                });
            }
            end -= padding;
        }
        Ok(RtpPacket {
            header,
            payload: data.slice(start..end),
        })
    }

    /// The packet as bytes: the fixed header (no CSRC, extension or
    /// padding) and the payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(RtpHeader::LEN + self.payload.len());
        self.header.write(&mut b);
        b.put_slice(&self.payload);
        b.freeze()
    }
}

/// Extends the 32-bit RTP clock to an `i64` so that a wrap (every 13.25 h
/// at 90 kHz, 24.9 h at 48 kHz) never makes it jump: each value is taken as
/// the one nearest the previous (a step of less than half the range, in
/// either direction). The first value is taken as is.
#[derive(Clone, Debug, Default)]
pub struct TimestampUnwrapper {
    inner: Wrap32,
}

impl TimestampUnwrapper {
    /// An unwrapper that has seen nothing yet.
    pub fn new() -> Self {
        TimestampUnwrapper {
            inner: Wrap32::new(),
        }
    }

    /// The extended value of `ts`.
    pub fn extend(&mut self, ts: u32) -> i64 {
        self.inner.extend(u64::from(ts))
    }

    /// The last extended value, if any.
    pub fn last(&self) -> Option<i64> {
        self.inner.last()
    }
}

/// Extends 16-bit RTP sequence numbers to an `i64` by the same
/// nearest-to-the-previous rule as [`TimestampUnwrapper`]: a wrap from
/// 65535 to 0 moves forward by one.
#[derive(Clone, Debug, Default)]
pub struct SeqUnwrapper {
    inner: WrapExtender<16>,
}

impl SeqUnwrapper {
    /// An unwrapper that has seen nothing yet.
    pub fn new() -> Self {
        SeqUnwrapper {
            inner: WrapExtender::new(),
        }
    }

    /// The extended value of `seq`.
    pub fn extend(&mut self, seq: u16) -> i64 {
        self.inner.extend(u64::from(seq))
    }

    /// The last extended value, if any.
    pub fn last(&self) -> Option<i64> {
        self.inner.last()
    }
}

/// A packet this far behind the next expected one is not late but from a
/// restarted sender (RFC 3550 Appendix A.1 `MAX_MISORDER`).
const MAX_MISORDER: i64 = 100;
/// A packet this far ahead is not after a loss but from a restarted
/// sender (RFC 3550 Appendix A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: i64 = 3000;

/// The extended sequence number nearest `reference` with low bits `seq`.
fn nearest(reference: i64, seq: u16) -> i64 {
    reference + i64::from(seq.wrapping_sub(reference as u16) as i16)
}

/// A packet held by the reorder buffer.
#[derive(Clone, Debug)]
struct Held {
    arrival_us: u64,
    packet: RtpPacket,
}

/// A small reorder buffer for RTP over UDP: packets in, packets out in
/// sequence order, with `lost` set on the first packet after a gap.
///
/// It holds at most `capacity` packets. A gap is given up on (the missing
/// packets declared lost) when the buffer is full or when a held packet
/// has waited `max_delay_us`. Duplicates and packets older than what was
/// already released are dropped and counted. The first packet pushed
/// starts the count: it is released at once, and packets numbered before
/// it are late.
///
/// A sender that restarts its sequence numbers far from the released ones
/// (more than 100 behind or 3000 ahead) is followed once two packets in a
/// row continue each other there (RFC 3550 Appendix A.1); until then they
/// count as dropped.
///
/// Use: [`push`](Self::push) each packet, then [`pop`](Self::pop) until
/// `None`; arm a timer at [`next_deadline`](Self::next_deadline) and pop
/// again when it fires.
#[derive(Debug)]
pub struct ReorderBuffer {
    capacity: usize,
    max_delay_us: u64,
    /// The extended sequence number the next released packet should have.
    next: Option<i64>,
    held: BTreeMap<i64, Held>,
    /// Released already, waiting for `pop` (after a resync).
    ready: VecDeque<(RtpPacket, bool)>,
    /// The next release follows a gap the caller has not been told of.
    gap_pending: bool,
    /// After a far-behind packet: the sequence that confirms a restart.
    probation: Option<i64>,
    dropped: u64,
    lost: u64,
}

impl ReorderBuffer {
    /// A buffer holding at most `capacity` packets (at least 1) and waiting
    /// at most `max_delay_us` for a missing one.
    pub fn new(capacity: usize, max_delay_us: u64) -> Self {
        ReorderBuffer {
            capacity: capacity.max(1),
            max_delay_us,
            next: None,
            held: BTreeMap::new(),
            ready: VecDeque::new(),
            gap_pending: false,
            probation: None,
            dropped: 0,
            lost: 0,
        }
    }

    /// A packet arrived at `now_us`.
    pub fn push(&mut self, now_us: u64, pkt: RtpPacket) {
        let seq = pkt.header.sequence;
        // Sequence numbers are read near the next one to release: what is
        // held lies between it and MAX_DROPOUT after it, so each number
        // has one reading, and one already released is known as such. The
        // first packet starts the count.
        let next = *self.next.get_or_insert(i64::from(seq));
        let ext = nearest(next, seq);
        if ext < next - MAX_MISORDER || ext > next + MAX_DROPOUT {
            if self.probation == Some(ext) {
                self.resync(ext);
            } else {
                self.probation = Some(ext + 1);
                self.dropped += 1;
                return;
            }
        } else if ext < next {
            // Late (already given up on) or a duplicate.
            self.dropped += 1;
            return;
        }
        self.probation = None;
        if self.held.contains_key(&ext) {
            self.dropped += 1;
            return;
        }
        self.held.insert(
            ext,
            Held {
                arrival_us: now_us,
                packet: pkt,
            },
        );
        // Only a caller that does not pop between pushes gets here with a
        // full buffer: let go of what it left waiting after a restart,
        // then of the packets furthest ahead.
        while self.len() > self.capacity {
            if self.ready.pop_front().is_some() {
                match self.ready.front_mut() {
                    Some(first) => first.1 = true,
                    None => self.gap_pending = true,
                }
            } else {
                self.held.pop_last();
            }
            self.dropped += 1;
        }
    }

    /// A sender restarted at `ext`: everything held is released in order,
    /// and the new run starts after a gap.
    fn resync(&mut self, ext: i64) {
        while let Some((seq, held)) = self.held.pop_first() {
            let lost = self.account_gap(seq);
            self.ready.push_back((held.packet, lost));
        }
        self.next = Some(ext);
        self.gap_pending = true;
    }

    /// Moves `next` past `seq`, counting the packets skipped; whether the
    /// packet at `seq` follows a gap.
    fn account_gap(&mut self, seq: i64) -> bool {
        let gap = match self.next {
            Some(next) if seq > next => (seq - next) as u64,
            _ => 0,
        };
        self.lost += gap;
        self.next = Some(seq + 1);
        let lost = gap > 0 || self.gap_pending;
        self.gap_pending = false;
        lost
    }

    /// The next packet in order, if it is due: `(packet, lost_before_it)`.
    #[must_use]
    pub fn pop(&mut self, now_us: u64) -> Option<(RtpPacket, bool)> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let (&seq, _) = self.held.first_key_value()?;
        let due = match self.next {
            None => true,
            Some(next) => {
                seq <= next
                    || self.held.len() >= self.capacity
                    || self
                        .oldest_arrival()
                        .is_some_and(|a| now_us >= a.saturating_add(self.max_delay_us))
            }
        };
        if !due {
            return None;
        }
        let (seq, held) = self.held.pop_first()?;
        let lost = self.account_gap(seq);
        Some((held.packet, lost))
    }

    fn oldest_arrival(&self) -> Option<u64> {
        self.held.values().map(|h| h.arrival_us).min()
    }

    /// When a held packet will be given up waiting for (for the caller's
    /// timer); `None` when nothing is held. A time already past means a
    /// packet is due now.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(0);
        }
        let (&seq, _) = self.held.first_key_value()?;
        if self.next.is_none_or(|n| seq <= n) || self.held.len() >= self.capacity {
            return Some(0);
        }
        self.oldest_arrival()
            .map(|a| a.saturating_add(self.max_delay_us))
    }

    /// Releases everything held, in order, gaps marked (the stream ended).
    pub fn flush(&mut self) -> Vec<(RtpPacket, bool)> {
        let mut out: Vec<_> = self.ready.drain(..).collect();
        while let Some((seq, held)) = self.held.pop_first() {
            let lost = self.account_gap(seq);
            out.push((held.packet, lost));
        }
        out
    }

    /// Packets held now.
    pub fn len(&self) -> usize {
        self.held.len() + self.ready.len()
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packets dropped: duplicates, late ones, and ones that did not fit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Packets given up on (never arrived in time).
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pkt(seq: u16) -> RtpPacket {
        RtpPacket {
            header: RtpHeader {
                marker: false,
                payload_type: 96,
                sequence: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc: 7,
            },
            payload: Bytes::from(seq.to_be_bytes().to_vec()),
        }
    }

    fn seqs(out: &[(RtpPacket, bool)]) -> Vec<(u16, bool)> {
        out.iter().map(|(p, l)| (p.header.sequence, *l)).collect()
    }

    fn drain(r: &mut ReorderBuffer, now: u64) -> Vec<(RtpPacket, bool)> {
        core::iter::from_fn(|| r.pop(now)).collect()
    }

    #[test]
    fn header_round_trip() {
        let h = RtpHeader {
            marker: true,
            payload_type: 97,
            sequence: 0xBEEF,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let mut b = BytesMut::new();
        h.write(&mut b);
        assert_eq!(
            &b[..],
            &[0x80, 0xE1, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        b.put_slice(b"xyz");
        let p = RtpPacket::parse(b.freeze()).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(&p.payload[..], b"xyz");
    }

    #[test]
    fn skips_csrcs_and_extension_and_strips_padding() {
        // V=2 P=1 X=1 CC=2, then 2 CSRCs, an extension of 1 word, payload
        // "ab", 3 bytes of padding.
        let mut d = vec![0xB2, 96, 0, 5, 0, 0, 0, 9, 0, 0, 0, 1];
        d.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]);
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]);
        d.extend_from_slice(b"ab");
        d.extend_from_slice(&[0, 0, 3]);
        let p = RtpPacket::parse(Bytes::from(d)).unwrap();
        assert_eq!(&p.payload[..], b"ab");
        assert_eq!(p.header.sequence, 5);
        assert_eq!(p.header.timestamp, 9);
    }

    #[test]
    fn refuses_bad_packets() {
        assert_eq!(
            RtpPacket::parse(Bytes::from_static(&[0x80, 0, 0])),
            Err(RtpError::Truncated { len: 3, need: 12 })
        );
        assert_eq!(
            RtpPacket::parse(Bytes::from_static(&[0x40; 12])),
            Err(RtpError::Version(1))
        );
        // CC=15 needs 72 bytes.
        assert!(matches!(
            RtpPacket::parse(Bytes::from_static(&[0x8F; 20])),
            Err(RtpError::Truncated { need: 72, .. })
        ));
        // Extension longer than the packet.
        let mut d = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        assert!(matches!(
            RtpPacket::parse(Bytes::from(d.clone())),
            Err(RtpError::Truncated { need: 52, .. })
        ));
        // Padding longer than the payload, and padding of zero.
        d = vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert!(matches!(
            RtpPacket::parse(Bytes::from(d.clone())),
            Err(RtpError::Padding { padding: 9, .. })
        ));
        d[13] = 0;
        assert!(matches!(
            RtpPacket::parse(Bytes::from(d.clone())),
            Err(RtpError::Padding { padding: 0, .. })
        ));
        // Padding that is the whole payload is fine.
        d[13] = 2;
        assert_eq!(RtpPacket::parse(Bytes::from(d)).unwrap().payload.len(), 0);
    }

    #[test]
    fn timestamps_cross_the_wrap_without_a_jump() {
        // 90 kHz, one frame every 3000 ticks, from 1 s before the wrap
        // through more than two full wraps (27 h).
        let mut u = TimestampUnwrapper::new();
        let start: i64 = (1 << 32) - 90_000;
        let mut prev = None;
        let mut t = start;
        while t < start + 2 * (1i64 << 32) + 90_000 {
            let e = u.extend(t as u32);
            assert_eq!(e, t);
            if let Some(p) = prev {
                assert_eq!(e - p, 3000);
            }
            prev = Some(e);
            t += 3000;
        }
        // A small step back across the wrap (B-frames) stays small.
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.extend(10), 10);
        assert_eq!(u.extend(u32::MAX - 5), -6);
        assert_eq!(u.extend(20), 20);
    }

    #[test]
    fn sequence_numbers_cross_the_wrap() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.extend(65_534), 65_534);
        assert_eq!(u.extend(65_535), 65_535);
        assert_eq!(u.extend(0), 65_536);
        assert_eq!(u.extend(65_535), 65_535);
        assert_eq!(u.extend(3), 65_539);
        let mut s = 65_539i64;
        for _ in 0..200_000 {
            s += 7;
            assert_eq!(u.extend(s as u16), s);
        }
    }

    #[test]
    fn reorders_and_marks_gaps() {
        let mut r = ReorderBuffer::new(8, 1000);
        r.push(0, pkt(10));
        assert_eq!(seqs(&drain(&mut r, 0)), [(10, false)]);
        r.push(1, pkt(12));
        r.push(2, pkt(13));
        assert!(r.pop(2).is_none());
        assert_eq!(r.next_deadline(), Some(1001));
        r.push(3, pkt(11));
        assert_eq!(
            seqs(&drain(&mut r, 3)),
            [(11, false), (12, false), (13, false)]
        );
        // 14 never comes: 15 waits until the deadline.
        r.push(10, pkt(15));
        assert!(r.pop(1009).is_none());
        assert_eq!(seqs(&drain(&mut r, 1010)), [(15, true)]);
        assert_eq!(r.lost(), 1);
        // 14 arriving now is late; 15 again is a duplicate.
        r.push(1011, pkt(14));
        r.push(1011, pkt(15));
        assert!(r.pop(1011).is_none());
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_full_buffer_gives_up_on_the_gap() {
        let mut r = ReorderBuffer::new(4, 1_000_000);
        r.push(0, pkt(65_534));
        assert_eq!(drain(&mut r, 0).len(), 1);
        for s in [0u16, 1, 2] {
            r.push(1, pkt(s));
            assert!(r.pop(1).is_none());
        }
        r.push(1, pkt(3));
        assert_eq!(
            seqs(&drain(&mut r, 1)),
            [(0, true), (1, false), (2, false), (3, false)]
        );
        assert_eq!(r.lost(), 1);
    }

    #[test]
    fn a_released_number_stays_released_however_far_pushes_wander() {
        // Found by fuzzing: pushes far apart used to move the reference of
        // the extension, so that a number released before came back.
        let mut r = ReorderBuffer::new(1, 0);
        for s in [0u16, 24_834, 24_845, 49_087] {
            r.push(0, pkt(s));
        }
        assert_eq!(seqs(&drain(&mut r, 0)), [(0, false)]);
        r.push(1, pkt(0));
        assert!(r.pop(1).is_none());
        assert_eq!(r.lost(), 0);
        // And never twice the same number, whatever came before.
        let mut r = ReorderBuffer::new(63, 10_000);
        let mut out = Vec::new();
        for (t, s) in [
            0u16, 2, 34_401, 65_535, 5, 24_929, 24_930, 24_930, 24_932, 34_401, 24_930,
        ]
        .into_iter()
        .enumerate()
        {
            r.push(t as u64 * 1000, pkt(s));
            out.extend(seqs(&drain(&mut r, t as u64 * 1000)));
        }
        out.extend(seqs(&r.flush()));
        // 24 929 then 24 930: a restart there.
        assert_eq!(
            out,
            [
                (0, false),
                (2, true),
                (5, true),
                (24_930, true),
                (24_932, true)
            ]
        );
    }

    #[test]
    fn a_sender_restarting_back_to_the_same_number_is_released_as_after_a_gap() {
        // Found by fuzzing: two restarts in a row (the second back where
        // the first left off) with the run between them let go for room
        // release the same number twice in a row; the second is a new
        // packet and carries the gap mark.
        let mut r = ReorderBuffer::new(1, 1000);
        r.push(0, pkt(100));
        assert_eq!(seqs(&drain(&mut r, 0)), [(100, false)]);
        for s in [5000u16, 5001, 99, 100] {
            r.push(1, pkt(s));
        }
        assert_eq!(seqs(&drain(&mut r, 1)), [(100, true)]);
        assert!(r.is_empty());
    }

    #[test]
    fn bounded_without_pops_across_restarts() {
        // Found by fuzzing: restarts moved what was held to the released
        // queue, which a caller that never pops let grow.
        let mut r = ReorderBuffer::new(4, 1000);
        r.push(0, pkt(0));
        for k in 0..50u16 {
            for s in 0..3 {
                r.push(1, pkt(k.wrapping_mul(5000).wrapping_add(s)));
                assert!(r.len() <= 4);
            }
        }
        let out = drain(&mut r, 1);
        assert!(out.len() <= 4);
        assert!(out[0].1, "the first after what was let go is marked");
    }

    #[test]
    fn follows_a_sender_that_jumps_ahead() {
        let mut r = ReorderBuffer::new(8, 1000);
        r.push(0, pkt(10));
        assert_eq!(drain(&mut r, 0).len(), 1);
        r.push(1, pkt(40_000));
        assert!(r.pop(1).is_none());
        r.push(2, pkt(40_001));
        assert_eq!(seqs(&drain(&mut r, 2)), [(40_001, true)]);
        assert_eq!(r.lost(), 0);
        assert_eq!(r.dropped(), 1);
    }

    #[test]
    fn follows_a_restarted_sender() {
        let mut r = ReorderBuffer::new(8, 1000);
        for s in 5000..5003u16 {
            r.push(0, pkt(s));
        }
        assert_eq!(drain(&mut r, 0).len(), 3);
        r.push(1, pkt(100));
        assert!(r.pop(1).is_none());
        r.push(2, pkt(101));
        assert_eq!(seqs(&drain(&mut r, 2)), [(101, true)]);
        r.push(3, pkt(102));
        assert_eq!(seqs(&drain(&mut r, 3)), [(102, false)]);
    }

    proptest! {
        /// Whatever the arrival order, with room for every packet the
        /// buffer releases each sequence number once, in order, and marks
        /// exactly the packets after a never-sent number.
        #[test]
        fn releases_in_order(
            start in any::<u16>(),
            n in 1usize..200,
            swaps in proptest::collection::vec((0usize..200, 0usize..8), 0..100),
            missing in proptest::collection::btree_set(1usize..200, 0..20),
        ) {
            let all: Vec<usize> = (0..n).filter(|i| !missing.contains(i)).collect();
            let mut order = all.clone();
            for (i, d) in swaps {
                if i < order.len() && i + d < order.len() {
                    order.swap(i, i + d);
                }
            }
            // The first packet arrives first (it is released at once).
            if let Some(p) = order.iter().position(|&i| i == 0) {
                order.remove(p);
                order.insert(0, 0);
            }
            let mut r = ReorderBuffer::new(256, 1_000);
            let mut out = Vec::new();
            for (t, &i) in order.iter().enumerate() {
                r.push(t as u64, pkt(start.wrapping_add(i as u16)));
                out.extend(drain(&mut r, t as u64));
            }
            out.extend(drain(&mut r, 1_000_000));
            let got: Vec<u16> = out.iter().map(|(p, _)| p.header.sequence).collect();
            let want: Vec<u16> = all.iter().map(|&i| start.wrapping_add(i as u16)).collect();
            prop_assert_eq!(got, want);
            for (k, (_, lost)) in out.iter().enumerate() {
                let gap = k > 0 && all[k] != all[k - 1] + 1;
                prop_assert_eq!(*lost, gap);
            }
            prop_assert_eq!(r.dropped(), 0);
        }

        /// Pushes near the running sequence (late ones, duplicates, gaps)
        /// and pops at arbitrary times: never more than `capacity` held
        /// after popping, output strictly increasing.
        #[test]
        fn bounded_and_monotonic(
            start in any::<u16>(),
            ops in proptest::collection::vec((0u16..8, 0u16..16, 0u64..5000, any::<bool>()), 0..300),
            cap in 1usize..16,
        ) {
            let mut r = ReorderBuffer::new(cap, 1000);
            let mut now = 0u64;
            let mut u = SeqUnwrapper::new();
            let mut last: Option<i64> = None;
            let mut cur = start;
            for (step, back, dt, pop) in ops {
                now += dt;
                cur = cur.wrapping_add(step);
                r.push(now, pkt(cur.wrapping_sub(back)));
                prop_assert!(r.len() <= cap);
                if pop {
                    while let Some((p, _)) = r.pop(now) {
                        let e = u.extend(p.header.sequence);
                        if let Some(l) = last {
                            prop_assert!(e > l);
                        }
                        last = Some(e);
                    }
                    prop_assert!(r.held.len() < cap);
                }
            }
            let released = r.flush();
            for (p, _) in released {
                let e = u.extend(p.header.sequence);
                prop_assert!(last.is_none_or(|l| e > l));
                last = Some(e);
            }
            prop_assert!(r.is_empty());
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(p) = RtpPacket::parse(Bytes::from(data.clone())) {
                prop_assert!(p.payload.len() <= data.len());
            }
        }
    }
}
