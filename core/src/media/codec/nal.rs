//! NAL unit framing: the Annex-B byte stream (ITU-T H.264 Annex B, H.265
//! Annex B: start codes `00 00 01` / `00 00 00 01`) and the length-prefixed
//! sample form of ISO/IEC 14496-15 §4.3 / §5.3.2 (4-byte big-endian lengths).

use super::CodecError;
use bytes::{BufMut, Bytes, BytesMut};

/// Iterates over the NAL units of an Annex-B byte stream, as zero-copy slices
/// without start codes and without trailing zero bytes.
#[derive(Clone, Debug)]
pub struct AnnexBNals {
    data: Bytes,
    pos: usize,
}

/// Position of the next start code (`00 00 01`) at or after `from`: returns
/// (index of the first byte of the start code, index just after it).
fn find_start_code(d: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= d.len() {
        if d[i + 2] > 1 {
            i += 3;
        } else if d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

impl AnnexBNals {
    /// The NAL units of `data`. Bytes before the first start code are ignored.
    pub fn new(data: Bytes) -> Self {
        let pos = find_start_code(&data, 0).map_or(data.len(), |(_, e)| e);
        AnnexBNals { data, pos }
    }
}

impl Iterator for AnnexBNals {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.pos >= self.data.len() {
                return None;
            }
            let start = self.pos;
            let end = match find_start_code(&self.data, start) {
                Some((s, e)) => {
                    self.pos = e;
                    s
                }
                None => {
                    self.pos = self.data.len();
                    self.data.len()
                }
            };
            let mut stop = end;
            while stop > start && self.data[stop - 1] == 0 {
                stop -= 1;
            }
            if stop > start {
                return Some(self.data.slice(start..stop));
            }
        }
    }
}

/// Iterates over 4-byte length-prefixed NAL units, as zero-copy slices.
#[derive(Clone, Debug)]
pub struct LengthPrefixedNals {
    data: Bytes,
    pos: usize,
    failed: bool,
}

impl LengthPrefixedNals {
    /// The NAL units of a sample in 4-byte length-prefixed form.
    pub fn new(data: Bytes) -> Self {
        LengthPrefixedNals {
            data,
            pos: 0,
            failed: false,
        }
    }
}

impl Iterator for LengthPrefixedNals {
    type Item = Result<Bytes, CodecError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        if rest.len() < 4 {
            self.failed = true;
            return Some(Err(CodecError::Truncated("NAL length prefix")));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > rest.len() - 4 {
            self.failed = true;
            return Some(Err(CodecError::Truncated("length-prefixed NAL unit")));
        }
        let s = self.pos + 4;
        self.pos = s + len;
        Some(Ok(self.data.slice(s..s + len)))
    }
}

/// Converts an Annex-B access unit to 4-byte length-prefixed form.
pub fn annex_b_to_length_prefixed(data: Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    for nal in AnnexBNals::new(data) {
        out.put_u32(nal.len() as u32);
        out.extend_from_slice(&nal);
    }
    out.freeze()
}

/// Converts a 4-byte length-prefixed access unit to Annex-B with 4-byte start
/// codes.
pub fn length_prefixed_to_annex_b(data: Bytes) -> Result<Bytes, CodecError> {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    for nal in LengthPrefixedNals::new(data) {
        out.put_u32(1);
        out.extend_from_slice(&nal?);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = Bytes::from_static(&[
            9, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 0, 0, 3, 1,
        ]);
        let nals: alloc::vec::Vec<_> = AnnexBNals::new(data.clone()).collect();
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 0, 0, 3, 1]]);
        let lp = annex_b_to_length_prefixed(data);
        assert_eq!(&lp[..7], &[0, 0, 0, 3, 0x67, 1, 2]);
        let back = length_prefixed_to_annex_b(lp).unwrap();
        assert_eq!(&back[..7], &[0, 0, 0, 1, 0x67, 1, 2]);
    }

    #[test]
    fn truncated_length_prefix_is_an_error() {
        let mut it = LengthPrefixedNals::new(Bytes::from_static(&[0, 0, 0, 9, 1]));
        assert!(matches!(it.next(), Some(Err(_))));
        assert!(it.next().is_none());
    }

    proptest! {
        #[test]
        fn annex_b_round_trip(nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 0..10)) {
            // Escape the NALs so that they contain no start code and do not end in zero.
            let nals: alloc::vec::Vec<alloc::vec::Vec<u8>> = nals.into_iter().map(|n| {
                let mut e = crate::media::codec::bits::escape_rbsp(&n);
                if e.last() == Some(&0) { e.push(0x80); }
                e
            }).collect();
            let mut lp = BytesMut::new();
            for n in &nals { lp.put_u32(n.len() as u32); lp.extend_from_slice(n); }
            let lp = lp.freeze();
            let ab = length_prefixed_to_annex_b(lp.clone()).unwrap();
            prop_assert_eq!(annex_b_to_length_prefixed(ab), lp);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(data);
            let _ = AnnexBNals::new(b.clone()).count();
            let _ = LengthPrefixedNals::new(b).count();
        }
    }
}
