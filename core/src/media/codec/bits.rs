//! Bit-level reading and writing of coded syntax, with the exp-Golomb codes
//! `ue(v)` and `se(v)` of ITU-T H.264 §9.1 / H.265 §9.2, and the removal of
//! emulation-prevention bytes (H.264 §7.4.1, H.265 §7.4.2).

use super::CodecError;
use alloc::vec::Vec;

/// Reads bits most-significant first from a byte slice.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits not read yet.
    pub fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Bits read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether the reader sits on a byte boundary.
    pub fn is_byte_aligned(&self) -> bool {
        self.pos % 8 == 0
    }

    /// Skips to the next byte boundary.
    pub fn byte_align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// One bit.
    pub fn read_bit(&mut self) -> Result<bool, CodecError> {
        let byte = *self
            .data
            .get(self.pos / 8)
            .ok_or(CodecError::Truncated("bit string"))?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// One bit, as a flag.
    pub fn read_flag(&mut self) -> Result<bool, CodecError> {
        self.read_bit()
    }

    /// `n` bits (at most 64) as an unsigned number.
    pub fn read_bits(&mut self, n: u32) -> Result<u64, CodecError> {
        if n > 64 {
            return Err(CodecError::Invalid("bit count above 64"));
        }
        if (n as usize) > self.bits_left() {
            return Err(CodecError::Truncated("bit string"));
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.data[self.pos / 8]; // in range: checked against bits_left above
            let offset = (self.pos % 8) as u32;
            let avail = 8 - offset;
            let take = avail.min(left);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            v = if take == 64 {
                chunk
            } else {
                (v << take) | chunk
            };
            left -= take;
            self.pos += take as usize;
        }
        Ok(v)
    }

    /// `n` bits (at most 32) as a `u32`.
    pub fn read_u32(&mut self, n: u32) -> Result<u32, CodecError> {
        if n > 32 {
            return Err(CodecError::Invalid("bit count above 32"));
        }
        // At most 32 bits were read, so the value fits.
        Ok(self.read_bits(n)? as u32)
    }

    /// `n` bits (at most 8) as a `u8`.
    pub fn read_u8(&mut self, n: u32) -> Result<u8, CodecError> {
        if n > 8 {
            return Err(CodecError::Invalid("bit count above 8"));
        }
        Ok(self.read_bits(n)? as u8)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), CodecError> {
        if n > self.bits_left() {
            return Err(CodecError::Truncated("bit string"));
        }
        self.pos += n;
        Ok(())
    }

    /// An unsigned exp-Golomb code `ue(v)` (H.264 §9.1), up to `2^32 - 2`.
    pub fn read_ue(&mut self) -> Result<u32, CodecError> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::Invalid("exp-Golomb code longer than 32 bits"));
            }
        }
        let rest = self.read_bits(zeros)?;
        // zeros <= 31, so (1 << zeros) - 1 + rest < 2^32.
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }

    /// A signed exp-Golomb code `se(v)` (H.264 §9.1.1).
    pub fn read_se(&mut self) -> Result<i32, CodecError> {
        let k = i64::from(self.read_ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= 2^31, and -2^31 only arises from k = 2^32, which read_ue cannot return.
        i32::try_from(v).map_err(|_| CodecError::Invalid("se(v) out of range"))
    }

    /// AV1's `uvlc()` (AV1 §4.10.3).
    pub fn read_uvlc(&mut self) -> Result<u32, CodecError> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Ok(u32::MAX);
            }
        }
        let rest = self.read_bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }
}

/// Writes bits most-significant first.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits used in the last byte of `out` (0 when it is full or empty).
    used: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        BitWriter::default()
    }

    /// Writes the low `n` bits (at most 64) of `v`.
    pub fn write_bits(&mut self, n: u32, v: u64) {
        for i in (0..n.min(64)).rev() {
            let bit = ((v >> i) & 1) as u8;
            if self.used == 0 {
                self.out.push(0);
            }
            if let Some(last) = self.out.last_mut() {
                *last |= bit << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }

    /// Writes one flag.
    pub fn write_flag(&mut self, f: bool) {
        self.write_bits(1, u64::from(f));
    }

    /// Writes `ue(v)`.
    pub fn write_ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros();
        self.write_bits(len - 1, 0);
        self.write_bits(len, x);
    }

    /// Writes `se(v)`.
    pub fn write_se(&mut self, v: i32) {
        let k = if v > 0 {
            (i64::from(v) * 2 - 1) as u32
        } else {
            (-(i64::from(v)) * 2) as u32
        };
        self.write_ue(k);
    }

    /// Pads with zero bits to a byte boundary and returns the bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    /// Pads with an RBSP trailing stop bit and zeros (H.264 §7.3.2.11).
    pub fn finish_rbsp(mut self) -> Vec<u8> {
        self.write_bits(1, 1);
        self.out
    }
}

/// Removes emulation-prevention bytes (`00 00 03` -> `00 00`) from a NAL unit,
/// giving its raw byte sequence payload. The output is never longer than the
/// input.
pub fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

/// Inserts emulation-prevention bytes into a raw byte sequence payload.
pub fn escape_rbsp(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 1);
    let mut zeros = 0usize;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exp_golomb_spec_table() {
        // H.264 Table 9-2: 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3.
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(r.read_ue().unwrap(), 0);
        assert_eq!(r.read_ue().unwrap(), 1);
        assert_eq!(r.read_ue().unwrap(), 2);
        assert_eq!(r.read_ue().unwrap(), 3);
        // Table 9-3: codeNum 1 -> 1, 2 -> -1, 3 -> 2.
        let mut r = BitReader::new(&[0b0100_1100, 0b1000_0000]);
        assert_eq!(r.read_se().unwrap(), 1);
        assert_eq!(r.read_se().unwrap(), -1);
        assert_eq!(r.read_se().unwrap(), 2);
    }

    #[test]
    fn reads_across_bytes_and_fails_at_end() {
        let mut r = BitReader::new(&[0xAB, 0xCD, 0xEF]);
        assert_eq!(r.read_bits(4).unwrap(), 0xA);
        assert_eq!(r.read_bits(12).unwrap(), 0xBCD);
        assert_eq!(r.read_bits(8).unwrap(), 0xEF);
        assert!(r.read_bit().is_err());
        let mut r = BitReader::new(&[0; 9]);
        assert_eq!(r.read_bits(64).unwrap(), 0);
        assert!(r.read_bits(9).is_err());
        assert!(BitReader::new(&[0, 0, 0, 0, 0]).read_ue().is_err());
    }

    #[test]
    fn emulation_prevention() {
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
        assert_eq!(escape_rbsp(&[0, 0, 1, 0, 0, 0]), [0, 0, 3, 1, 0, 0, 3, 0]);
    }

    proptest! {
        #[test]
        fn exp_golomb_round_trip(values in proptest::collection::vec((any::<u32>().prop_map(|v| v.min(u32::MAX - 1)), any::<i32>().prop_map(|v| v.max(-i32::MAX)), 0u32..=64, any::<u64>()), 0..50)) {
            let mut w = BitWriter::new();
            for &(u, s, n, raw) in &values {
                w.write_ue(u);
                w.write_se(s);
                w.write_bits(n, raw);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for &(u, s, n, raw) in &values {
                prop_assert_eq!(r.read_ue().unwrap(), u);
                prop_assert_eq!(r.read_se().unwrap(), s);
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read_bits(n).unwrap(), raw & mask);
            }
            prop_assert!(r.bits_left() < 8);
        }

        #[test]
        fn rbsp_escape_round_trip(data in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 0x80]), 0..200)) {
            let esc = escape_rbsp(&data);
            prop_assert!(!esc.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
            prop_assert_eq!(unescape_rbsp(&esc), data);
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16), ops in proptest::collection::vec(0u8..5, 0..40)) {
            let mut r = BitReader::new(&data);
            for op in ops {
                let _ = match op {
                    0 => r.read_ue().map(|_| ()),
                    1 => r.read_se().map(|_| ()),
                    2 => r.read_bits(13).map(|_| ()),
                    3 => r.read_uvlc().map(|_| ()),
                    _ => r.skip(7),
                };
            }
        }
    }
}
