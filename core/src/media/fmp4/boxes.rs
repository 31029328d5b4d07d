//! Writing ISO BMFF boxes (ISO/IEC 14496-12 §4.2): a size placeholder
//! patched when the box ends.

use bytes::{BufMut, BytesMut};

/// Starts a box; returns where it starts, for [`end`].
pub(crate) fn begin(out: &mut BytesMut, fourcc: &[u8; 4]) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(fourcc);
    start
}

/// Starts a full box (with version and flags).
pub(crate) fn begin_full(out: &mut BytesMut, fourcc: &[u8; 4], version: u8, flags: u32) -> usize {
    let start = begin(out, fourcc);
    out.put_u32((u32::from(version) << 24) | (flags & 0xFF_FFFF));
    start
}

/// Ends the box started at `start` by writing its size.
pub(crate) fn end(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// The unity matrix of `mvhd` and `tkhd`.
pub(crate) fn put_matrix(out: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        out.put_u32(v);
    }
}
