//! Access units of NAL-based video out of RTP (shared by RFC 6184 §5.6–5.8
//! and RFC 7798 §4.4): NAL units and their fragments collected as slices
//! of the packets, joined into the canonical 4-byte length-prefixed form
//! (ISO/IEC 14496-15 sample form) with one copy when the access unit ends.
//!
//! An access unit ends at the marker bit (RFC 6184 §5.1, RFC 7798 §4.1),
//! at a change of RTP time stamp (senders that forget the marker) or at an
//! access unit delimiter. The loss rule: an access unit that may miss a
//! piece (a packet before it went missing, a fragment came without its
//! start or end, a packet was malformed) is dropped, and so is every
//! access unit after it until a key frame; an access unit made of
//! parameter sets or SEI only is kept and put in front of the next one.
//! The first access unit of a stream is taken when it begins with a NAL
//! unit that may begin one (anything but a slice other than the first of
//! its picture): joined in the middle of an access unit, the stream's
//! first picture may lack the SEI or parameter sets sent before it, never
//! a slice.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::{AccessUnit, PayloadError};

/// The largest access unit assembled (bytes, length prefixes included).
pub const MAX_AU_BYTES: usize = 8 << 20;
/// The most NAL units in one access unit.
pub const MAX_AU_NALS: usize = 1024;
/// The most pieces (NAL units, fragments) one access unit is made of.
const MAX_AU_PIECES: usize = 32 * 1024;
/// Access units waiting for `pop`: a caller that pulls between pushes
/// never has more than two.
const MAX_QUEUED: usize = 16;

/// A piece of a NAL unit: a rebuilt header (fragmentation units) or a
/// slice of a packet.
#[derive(Clone, Debug)]
enum Piece {
    Header([u8; 2], u8),
    Data(Bytes),
}

/// A whole NAL unit: where its pieces end, and its length.
#[derive(Clone, Copy, Debug)]
struct Nal {
    pieces_end: usize,
    len: usize,
}

/// What a NAL unit is, as the assembler needs to know.
#[derive(Clone, Copy, Debug, Default)]
pub struct NalKind {
    /// A picture a decoder can start at (H.264 IDR, H.265 IRAP).
    pub key: bool,
    /// A coded slice (VCL NAL unit).
    pub vcl: bool,
    /// It may be the first NAL unit of an access unit: any non-VCL NAL
    /// unit, or the first slice of a picture (H.264 `first_mb_in_slice`
    /// 0, H.265 `first_slice_segment_in_pic_flag`).
    pub first: bool,
}

/// Builds access units out of NAL units and fragments.
#[derive(Debug)]
pub struct NalAssembler {
    /// The extended time stamp of the access unit being built.
    ts: Option<i64>,
    pieces: Vec<Piece>,
    nals: Vec<Nal>,
    /// Bytes of the access unit with length prefixes, the open fragment
    /// included.
    bytes: usize,
    /// The length so far of a fragmented NAL unit whose end has not come.
    fu: Option<usize>,
    kind: NalKind,
    broken: bool,
    wait_key: bool,
    /// No access unit has ended yet: the first may be the tail of a
    /// picture the stream was joined in.
    joining: bool,
    out: VecDeque<AccessUnit>,
    dropped: u64,
}

impl NalAssembler {
    /// An assembler that waits for a key frame first.
    pub fn new() -> Self {
        NalAssembler {
            ts: None,
            pieces: Vec::new(),
            nals: Vec::new(),
            bytes: 0,
            fu: None,
            kind: NalKind::default(),
            broken: false,
            wait_key: true,
            joining: true,
            out: VecDeque::new(),
            dropped: 0,
        }
    }

    /// A packet with extended time stamp `ts` begins; `lost`: packets went
    /// missing just before it.
    pub fn begin(&mut self, ts: i64, lost: bool) {
        if lost {
            // What is being built may miss its tail, and the packets lost
            // may have been whole pictures.
            if self.ts.is_some() {
                self.broken = true;
            }
            self.close_fragment();
            self.wait_key = true;
        }
        if self.ts.is_some_and(|t| t != ts) {
            self.finish();
        }
        if lost {
            // The lost packets may have been the head of this one's access
            // unit.
            self.broken = true;
        }
        self.ts = Some(ts);
    }

    /// The access unit being built is damaged: it will be dropped, and the
    /// ones after it until a key frame.
    pub fn fail(&mut self) {
        self.close_fragment();
        self.broken = true;
        self.wait_key = true;
    }

    /// The access unit under way ends here and a new one (same time
    /// stamp) starts clean.
    pub fn split(&mut self) {
        let ts = self.ts;
        self.finish();
        self.ts = ts;
    }

    /// An access unit delimiter (H.264 §7.4.1.2.3, H.265 §7.4.2.4.4: the
    /// first NAL unit of an access unit). After a picture it ends that
    /// access unit. After NAL units that are no picture (parameter sets
    /// or SEI a sender put after the marker of the previous picture, or
    /// before the delimiter) it goes in front of them, where it belongs.
    pub fn delimiter(&mut self, nal: Bytes, kind: NalKind, seq: u16) -> Result<(), PayloadError> {
        if self.kind.vcl || self.broken || self.fu.is_some() || self.nals.is_empty() {
            self.split();
            return self.nal(nal, kind, seq);
        }
        self.check_room(4 + nal.len(), 1, seq)?;
        self.bytes += 4 + nal.len();
        let len = nal.len();
        self.pieces.insert(0, Piece::Data(nal));
        for n in &mut self.nals {
            n.pieces_end += 1;
        }
        self.nals.insert(0, Nal { pieces_end: 1, len });
        self.add_kind(kind);
        Ok(())
    }

    fn check_room(&mut self, add: usize, pieces: usize, seq: u16) -> Result<(), PayloadError> {
        if self.bytes.saturating_add(add) > MAX_AU_BYTES
            || self.pieces.len() + pieces > MAX_AU_PIECES
        {
            self.fail();
            return Err(PayloadError::TooLarge {
                sequence: seq,
                limit: MAX_AU_BYTES,
            });
        }
        if self.nals.len() >= MAX_AU_NALS && self.fu.is_none() {
            self.fail();
            return Err(PayloadError::TooManyNals {
                sequence: seq,
                limit: MAX_AU_NALS,
            });
        }
        Ok(())
    }

    /// A whole NAL unit of packet `seq`.
    pub fn nal(&mut self, nal: Bytes, kind: NalKind, seq: u16) -> Result<(), PayloadError> {
        if self.fu.is_some() {
            self.fail();
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "a fragmented NAL unit without its end",
            });
        }
        if self.broken {
            return Ok(());
        }
        self.check_room(4 + nal.len(), 1, seq)?;
        self.bytes += 4 + nal.len();
        let len = nal.len();
        self.pieces.push(Piece::Data(nal));
        self.nals.push(Nal {
            pieces_end: self.pieces.len(),
            len,
        });
        self.add_kind(kind);
        Ok(())
    }

    fn add_kind(&mut self, kind: NalKind) {
        if self.joining && self.nals.len() + usize::from(self.fu.is_some()) == 1 && !kind.first {
            // The stream was joined after the start of this picture.
            self.broken = true;
        }
        self.kind.key |= kind.key;
        self.kind.vcl |= kind.vcl;
    }

    /// The first fragment of a NAL unit: its rebuilt header (1 or 2 bytes)
    /// and the fragment's data.
    pub fn fragment_start(
        &mut self,
        header: &[u8],
        data: Bytes,
        kind: NalKind,
        seq: u16,
    ) -> Result<(), PayloadError> {
        if self.fu.is_some() {
            self.fail();
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "a fragmented NAL unit without its end",
            });
        }
        if self.broken {
            return Ok(());
        }
        let mut h = [0u8; 2];
        let hlen = header.len().min(2);
        h[..hlen].copy_from_slice(&header[..hlen]);
        let len = hlen + data.len();
        self.check_room(4 + len, 2, seq)?;
        self.bytes += 4 + len;
        self.pieces.push(Piece::Header(h, hlen as u8));
        self.pieces.push(Piece::Data(data));
        self.fu = Some(len);
        self.add_kind(kind);
        Ok(())
    }

    /// A later fragment; `end`: the last one. Returns whether a NAL unit
    /// was completed.
    pub fn fragment(&mut self, data: Bytes, end: bool, seq: u16) -> Result<bool, PayloadError> {
        if self.broken {
            self.close_fragment();
            return Ok(false);
        }
        let Some(so_far) = self.fu else {
            self.fail();
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "a fragment without its start",
            });
        };
        self.check_room(data.len(), 1, seq)?;
        self.bytes += data.len();
        let len = so_far + data.len();
        self.pieces.push(Piece::Data(data));
        if end {
            self.nals.push(Nal {
                pieces_end: self.pieces.len(),
                len,
            });
            self.fu = None;
        } else {
            self.fu = Some(len);
        }
        Ok(end)
    }

    /// The last whole NAL unit, joined (for parameter sets that came in
    /// fragments).
    pub fn last_nal(&self) -> Option<Bytes> {
        let last = self.nals.last()?;
        let start = match self.nals.len() {
            1 => 0,
            n => self.nals[n - 2].pieces_end,
        };
        let mut b = BytesMut::with_capacity(last.len);
        for p in self.pieces.get(start..last.pieces_end)? {
            match p {
                Piece::Header(h, n) => b.put_slice(&h[..usize::from(*n)]),
                Piece::Data(d) => b.put_slice(d),
            }
        }
        Some(b.freeze())
    }

    /// Drops the pieces of a fragmented NAL unit that will not end.
    fn close_fragment(&mut self) {
        if let Some(len) = self.fu.take() {
            let keep = self.nals.last().map_or(0, |n| n.pieces_end);
            self.pieces.truncate(keep);
            self.bytes = self.bytes.saturating_sub(4 + len);
        }
    }

    fn clear(&mut self) {
        self.ts = None;
        self.pieces.clear();
        self.nals.clear();
        self.bytes = 0;
        self.fu = None;
        self.kind = NalKind::default();
        self.broken = false;
    }

    /// The access unit being built ends here (marker bit, new time stamp,
    /// delimiter): queue it, or drop it by the loss rule.
    pub fn finish(&mut self) {
        if self.ts.is_some() || !self.nals.is_empty() {
            self.joining = false;
        }
        if self.fu.is_some() {
            // Its last fragment never came.
            self.close_fragment();
            self.broken = true;
        }
        if self.broken {
            if self.ts.is_some() || !self.nals.is_empty() {
                self.dropped += 1;
            }
            self.wait_key = true;
            self.clear();
            return;
        }
        let Some(ts) = self.ts else { return };
        if self.nals.is_empty() {
            self.ts = None;
            return;
        }
        if !self.kind.vcl {
            // Parameter sets or SEI sent on their own: they belong to the
            // next picture.
            self.ts = None;
            return;
        }
        if self.wait_key && !self.kind.key {
            self.dropped += 1;
            self.clear();
            return;
        }
        self.wait_key = false;
        let mut data = BytesMut::with_capacity(self.bytes);
        let mut start = 0;
        for n in &self.nals {
            data.put_u32(n.len as u32);
            for p in self.pieces.get(start..n.pieces_end).unwrap_or_default() {
                match p {
                    Piece::Header(h, k) => data.put_slice(&h[..usize::from(*k)]),
                    Piece::Data(d) => data.put_slice(d),
                }
            }
            start = n.pieces_end;
        }
        debug_assert_eq!(data.len(), self.bytes);
        self.out.push_back(AccessUnit {
            timestamp: ts,
            key: self.kind.key,
            data: data.freeze(),
        });
        if self.out.len() > MAX_QUEUED {
            self.out.pop_front();
            self.dropped += 1;
        }
        self.clear();
    }

    /// The next access unit out.
    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.out.pop_front()
    }

    /// Access units dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
