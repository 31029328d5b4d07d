//! Reading the FLV file container (Adobe FLV file format, E.2–E.4.1): the
//! header, then tags each followed by the previous tag's size. Sans-IO:
//! push bytes as they are read, pull whole tags. Their bodies are what RTMP
//! carries in audio, video and data messages (the RTMP crate's ingest turns
//! them into frames); the same framing arrives from an FLV file and from an
//! HTTP-FLV response.

use bytes::{Buf, Bytes, BytesMut};

/// An FLV file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvFileError {
    /// The first bytes are not `FLV`.
    #[error("not an FLV file")]
    NotFlv,
    /// The header's length field is out of range.
    #[error("bad FLV header length {0}")]
    BadHeader(u32),
    /// A tag is larger than the configured bound.
    #[error("FLV tag of {size} bytes at offset {offset} exceeds the {max}-byte bound")]
    TagTooLarge {
        /// Its declared size.
        size: usize,
        /// Where it starts in the file.
        offset: u64,
        /// The bound.
        max: usize,
    },
}

/// What a tag carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// Audio (type 8).
    Audio,
    /// Video (type 9).
    Video,
    /// Script data (type 18), e.g. `onMetaData`.
    Script,
    /// Any other type.
    Other(u8),
}

/// One tag of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTag {
    /// Its type.
    pub kind: TagKind,
    /// Its 32-bit millisecond time stamp (with the extension byte).
    pub timestamp: u32,
    /// Its body, cut from the read buffer without a copy.
    pub body: Bytes,
}

/// Reads an FLV file incrementally. Memory is bounded by the largest tag
/// allowed plus what was pushed ahead of it.
#[derive(Debug)]
pub struct FlvFileReader {
    buf: BytesMut,
    header_done: bool,
    max_tag: usize,
    offset: u64,
}

impl FlvFileReader {
    /// A reader accepting tags of at most `max_tag` bytes.
    pub fn new(max_tag: usize) -> Self {
        FlvFileReader {
            buf: BytesMut::new(),
            header_done: false,
            max_tag,
            offset: 0,
        }
    }

    /// Bytes read from the file, in order.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole tag; `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<FileTag>, FlvFileError> {
        if !self.header_done {
            if self.buf.len() < 3 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvFileError::NotFlv);
            }
            if self.buf.len() < 9 {
                return Ok(None);
            }
            let header = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
            if !(9..=1024).contains(&header) {
                return Err(FlvFileError::BadHeader(header));
            }
            // The header, then PreviousTagSize0.
            let skip = header as usize + 4;
            if self.buf.len() < skip {
                return Ok(None);
            }
            self.buf.advance(skip);
            self.offset += skip as u64;
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let b = &self.buf;
        let size = (usize::from(b[1]) << 16) | (usize::from(b[2]) << 8) | usize::from(b[3]);
        if size > self.max_tag {
            return Err(FlvFileError::TagTooLarge {
                size,
                offset: self.offset,
                max: self.max_tag,
            });
        }
        if b.len() < 11 + size + 4 {
            return Ok(None);
        }
        let kind = match b[0] & 0x1f {
            8 => TagKind::Audio,
            9 => TagKind::Video,
            18 => TagKind::Script,
            t => TagKind::Other(t),
        };
        let timestamp = (u32::from(b[7]) << 24)
            | (u32::from(b[4]) << 16)
            | (u32::from(b[5]) << 8)
            | u32::from(b[6]);
        self.buf.advance(11);
        let body = self.buf.split_to(size).freeze();
        self.buf.advance(4);
        self.offset += (11 + size + 4) as u64;
        Ok(Some(FileTag {
            kind,
            timestamp,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(tags: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for (t, ts, body) in tags {
            let n = body.len();
            f.extend_from_slice(&[*t, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            f.extend_from_slice(&[
                (ts >> 16) as u8,
                (ts >> 8) as u8,
                *ts as u8,
                (ts >> 24) as u8,
                0,
                0,
                0,
            ]);
            f.extend_from_slice(body);
            f.extend_from_slice(&((11 + n) as u32).to_be_bytes());
        }
        f
    }

    fn read_all(data: &[u8], step: usize) -> Result<Vec<FileTag>, FlvFileError> {
        let mut r = FlvFileReader::new(1 << 20);
        let mut out = Vec::new();
        for chunk in data.chunks(step.max(1)) {
            r.push(chunk);
            while let Some(t) = r.next_tag()? {
                out.push(t);
            }
        }
        Ok(out)
    }

    #[test]
    fn reads_tags_with_extended_timestamps() {
        let data = file(&[
            (9, 0x0100_0020, vec![0x17, 0]),
            (8, 5, vec![0xaf, 1, 2]),
            (18, 0, vec![2]),
        ]);
        let tags = read_all(&data, 3).unwrap();
        assert_eq!(tags.len(), 3);
        assert_eq!(
            (tags[0].kind, tags[0].timestamp),
            (TagKind::Video, 0x0100_0020)
        );
        assert_eq!(
            (tags[1].kind, &tags[1].body[..]),
            (TagKind::Audio, &[0xaf, 1, 2][..])
        );
        assert_eq!(tags[2].kind, TagKind::Script);
    }

    #[test]
    fn reads_a_file_ffmpeg_wrote() {
        // ffmpeg 5.1: 1 s of testsrc2 at 10 fps (libx264, GOP 10) + AAC.
        let data = include_bytes!("../../../testdata/ffmpeg5_h264_aac_1s.flv");
        let whole = read_all(data, data.len()).unwrap();
        assert_eq!(read_all(data, 7).unwrap(), whole);
        let video = whole.iter().filter(|t| t.kind == TagKind::Video).count();
        // The AVC sequence header, ten frames, the end-of-sequence tag.
        assert_eq!(video, 12);
        assert!(whole.iter().any(|t| t.kind == TagKind::Audio));
        assert!(whole.iter().any(|t| t.kind == TagKind::Script));
        let last = whole.iter().map(|t| t.timestamp).max().unwrap();
        assert!((900..=1100).contains(&last), "{last}");
    }

    #[test]
    fn refuses_bad_input_before_allocating() {
        assert_eq!(read_all(b"MP4.........", 64), Err(FlvFileError::NotFlv));
        assert_eq!(
            read_all(b"FLV\x01\x05\xff\xff\xff\xff", 64),
            Err(FlvFileError::BadHeader(u32::MAX))
        );
        let mut big = file(&[]);
        big.extend_from_slice(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        let mut r = FlvFileReader::new(1 << 20);
        r.push(&big);
        assert!(matches!(
            r.next_tag(),
            Err(FlvFileError::TagTooLarge {
                size: 0xff_ffff,
                ..
            })
        ));
    }

    proptest! {
        /// Any split of a file gives the same tags; arbitrary bytes never panic.
        #[test]
        fn splits_agree_and_garbage_is_safe(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            step in 1usize..97,
            junk in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let tags: Vec<(u8, u32, Vec<u8>)> = bodies.into_iter().enumerate().map(|(i, b)| (8 + (i % 2) as u8, i as u32 * 33, b)).collect();
            let data = file(&tags);
            prop_assert_eq!(read_all(&data, step).unwrap(), read_all(&data, data.len()).unwrap());
            prop_assert_eq!(read_all(&data, step).unwrap().len(), tags.len());
            let _ = read_all(&junk, step);
        }
    }
}
