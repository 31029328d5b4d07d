//! The chunk stream layer (RTMP specification 1.0, section 5.3): messages
//! cut into chunks of at most the chunk size, each with a basic header
//! (format and chunk stream id) and a message header of type 0 (11 bytes),
//! 1 (7), 2 (3) or 3 (none), plus an extended timestamp when the 24-bit
//! field reads `0xFFFFFF`, repeated on type-3 continuation chunks.
//!
//! [`ChunkDecoder`] is incremental in the httparse sense: it only consumes a
//! chunk when all of it is in the buffer, so feeding the same bytes split at
//! any boundary yields the same messages. The chunk stream table grows with
//! the streams a peer really uses (two or three for real clients), bounded
//! by [`MAX_CHUNK_STREAMS`] and the configured limit, and each message length
//! is checked against the configured maximum before any buffer grows. A message that fits one chunk is handed
//! out as a slice of the receive buffer, without a copy.

use crate::error::{Result, RtmpError};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size Set Chunk Size may announce (2^31 - 1).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// The most chunk streams one connection may use.
pub const MAX_CHUNK_STREAMS: usize = 64;
const EXTENDED: u32 = 0x00FF_FFFF;
/// Chunk streams whose last header the encoder remembers.
const MAX_SEND_STREAMS: usize = 16;

/// The header of a complete message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp (32-bit RTMP clock, milliseconds).
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// A complete message as the chunk layer delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    /// Where and when.
    pub header: MessageHeader,
    /// The body: a slice of the receive buffer when it came in one chunk.
    pub payload: Bytes,
}

/// The receive state of one chunk stream.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// The last timestamp field: absolute after type 0, a delta after 1/2.
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last header carried an extended timestamp.
    extended: bool,
    /// Bytes of the current message still to come (0: none in progress).
    remaining: u32,
    partial: BytesMut,
}

/// Reassembles messages from chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    max_message: u32,
    max_streams: usize,
    streams: Vec<ChunkStream>,
    /// After `read` returned `None`: bytes known to be missing from the
    /// next chunk (at least 1).
    need: usize,
    /// Bytes held in half-received messages across all chunk streams.
    in_flight: usize,
}

impl ChunkDecoder {
    /// A decoder accepting messages up to `max_message` bytes on at most
    /// `max_streams` chunk streams (capped at [`MAX_CHUNK_STREAMS`]).
    pub fn new(max_message: u32, max_streams: usize) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message,
            max_streams: max_streams.min(MAX_CHUNK_STREAMS),
            streams: Vec::new(),
            need: 1,
            in_flight: 0,
        }
    }

    /// The peer's chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(RtmpError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Applies the peer's Abort: drops the half-received message on `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
            self.in_flight -= s.partial.len();
            s.remaining = 0;
            s.partial = BytesMut::new();
        }
    }

    /// After [`read`](Self::read) returned `None`: how many more bytes the
    /// next chunk needs at least (a lower bound while its header is
    /// incomplete). A host holding the rest of the stream in another buffer
    /// moves that many bytes over instead of appending everything.
    pub fn needed(&self) -> usize {
        self.need
    }

    /// Consumes chunks from `buf` until a message is complete (`Some`), or
    /// until the next chunk is not all there (`None`: need more bytes).
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>> {
        loop {
            match self.read_chunk(buf)? {
                Step::Partial(need) => {
                    self.need = need.max(1);
                    return Ok(None);
                }
                Step::Consumed => continue,
                Step::Message(m) => return Ok(Some(m)),
            }
        }
    }

    fn read_chunk(&mut self, buf: &mut BytesMut) -> Result<Step> {
        let b = &buf[..];
        let Some(&b0) = b.first() else {
            return Ok(Step::Partial(1));
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(Step::Partial(2 - b.len())),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&x), Some(&y)) => (64 + u32::from(x) + (u32::from(y) << 8), 3),
                _ => return Ok(Step::Partial(3 - b.len())),
            },
            c => (u32::from(c), 1),
        };
        let mh_len = [11usize, 7, 3, 0][usize::from(fmt)];
        if b.len() < pos + mh_len {
            return Ok(Step::Partial(pos + mh_len - b.len()));
        }
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let prev = idx.map(|i| &self.streams[i]);
        if fmt != 0 && prev.is_none() {
            return Err(RtmpError::NoPreviousHeader { csid, fmt });
        }
        let in_progress = prev.is_some_and(|s| s.remaining > 0);
        if in_progress && fmt != 3 {
            return Err(RtmpError::InterruptedMessage { csid, fmt });
        }
        let u24 = |p: usize| u32::from_be_bytes([0, b[p], b[p + 1], b[p + 2]]);
        // The fields this chunk's header sets.
        let mut field = 0u32;
        let (mut length, mut type_id, mut stream_id) = match prev {
            Some(s) => (s.length, s.type_id, s.stream_id),
            None => (0, 0, 0),
        };
        if fmt <= 2 {
            field = u24(pos);
        }
        if fmt <= 1 {
            length = u24(pos + 3);
            type_id = b[pos + 6];
        }
        if fmt == 0 {
            stream_id = u32::from_le_bytes([b[pos + 7], b[pos + 8], b[pos + 9], b[pos + 10]]);
        }
        pos += mh_len;
        let extended = if fmt <= 2 {
            field == EXTENDED
        } else {
            prev.is_some_and(|s| s.extended)
        };
        let mut ext_value = None;
        if extended {
            if b.len() < pos + 4 {
                return Ok(Step::Partial(pos + 4 - b.len()));
            }
            let v = u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
            let prev_field = prev.map_or(0, |s| s.ts_field);
            if fmt == 3 && in_progress && v != prev_field {
                // Some encoders leave the extended timestamp off type-3
                // continuation chunks: the four bytes are payload.
            } else {
                ext_value = Some(v);
                pos += 4;
            }
        }
        if fmt <= 2 && extended {
            // `extended` was set from the field, so `ext_value` was read.
            field = ext_value.unwrap_or(field);
        }
        if !in_progress && length > self.max_message {
            return Err(RtmpError::MessageTooLarge {
                csid,
                len: length,
                max: self.max_message,
            });
        }
        let remaining = if in_progress {
            prev.map_or(0, |s| s.remaining)
        } else {
            length
        };
        let n = remaining.min(self.chunk_size) as usize;
        if b.len() < pos + n {
            return Ok(Step::Partial(pos + n - b.len()));
        }

        // The whole chunk is here: commit.
        let i = match idx {
            Some(i) => i,
            None => {
                if self.streams.len() >= self.max_streams {
                    return Err(RtmpError::TooManyChunkStreams {
                        csid,
                        max: self.max_streams,
                    });
                }
                let s = ChunkStream {
                    csid,
                    timestamp: 0,
                    ts_field: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: false,
                    remaining: 0,
                    partial: BytesMut::new(),
                };
                // Room for one more at a time: a player uses two or three
                // chunk streams, and thousands of players should not each
                // keep room for four.
                self.streams.reserve_exact(1);
                self.streams.push(s);
                self.streams.len() - 1
            }
        };
        buf.advance(pos);
        let s = &mut self.streams[i];
        if !in_progress {
            match fmt {
                0 => {
                    s.timestamp = field;
                    s.ts_field = field;
                }
                1 | 2 => {
                    s.timestamp = s.timestamp.wrapping_add(field);
                    s.ts_field = field;
                }
                _ => {
                    if let Some(v) = ext_value {
                        s.ts_field = v;
                    }
                    s.timestamp = s.timestamp.wrapping_add(s.ts_field);
                }
            }
            if fmt <= 2 {
                s.extended = extended;
            }
            s.length = length;
            s.type_id = type_id;
            s.stream_id = stream_id;
            s.remaining = length;
        }
        let header = MessageHeader {
            csid,
            timestamp: s.timestamp,
            type_id: s.type_id,
            stream_id: s.stream_id,
        };
        if !in_progress && n as u32 == length {
            s.remaining = 0;
            return Ok(Step::Message(RawMessage {
                header,
                payload: buf.split_to(n).freeze(),
            }));
        }
        if !in_progress {
            // Grow with the bytes that arrive, not with the announced length.
            s.partial = BytesMut::with_capacity((length as usize).min(1 << 16));
        }
        // Interleaved messages are each bounded by the maximum message size;
        // all of them together by twice that (a video frame and the audio
        // interleaved with it), so many chunk streams cannot multiply it.
        let limit = (self.max_message as usize).saturating_mul(2);
        if self.in_flight + n > limit {
            return Err(RtmpError::ReassemblyTooLarge {
                csid,
                held: self.in_flight + n,
                max: limit,
            });
        }
        self.in_flight += n;
        s.partial.extend_from_slice(&buf[..n]);
        buf.advance(n);
        s.remaining -= n as u32;
        if s.remaining == 0 {
            self.in_flight -= s.partial.len();
            let payload = core::mem::take(&mut s.partial).freeze();
            return Ok(Step::Message(RawMessage { header, payload }));
        }
        Ok(Step::Consumed)
    }
}

enum Step {
    /// The next chunk lacks at least this many bytes.
    Partial(usize),
    Consumed,
    Message(RawMessage),
}

#[derive(Clone, Copy, Debug)]
struct SendState {
    csid: u32,
    timestamp: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Cuts messages into chunks, compressing headers as the previous message on
/// the same chunk stream allows.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: Vec<SendState>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder with the initial chunk size of 128.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// The chunk size in use.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Uses `size` from now on (after sending Set Chunk Size). Values outside
    /// 1..=2^31-1 are clamped.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    fn basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
        if (2..64).contains(&csid) {
            out.put_u8((fmt << 6) | csid as u8);
        } else if csid < 320 {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        } else {
            let c = (csid - 64).min(0xFFFF);
            out.put_u8((fmt << 6) | 1);
            out.put_u8((c & 0xFF) as u8);
            out.put_u8((c >> 8) as u8);
        }
    }

    /// Writes one message made of `parts` (concatenated) as chunks. A
    /// message length is 24 bits on the wire: bytes past 16 MiB - 1 are not
    /// sent (no frame comes near it).
    pub fn write(
        &mut self,
        out: &mut BytesMut,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        type_id: u8,
        parts: &[&[u8]],
    ) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let cs = self.chunk_size as usize;
        out.reserve(total + 18 + (total / cs) * 8);
        let ext = self.first_header(out, csid, stream_id, timestamp, type_id, total);
        Self::body(out, cs, csid, ext, parts);
    }

    /// Writes the first chunk's header of a message of `total` bytes,
    /// compressed against the chunk stream's previous message, and records
    /// it. Returns the extended time stamp field the message's continuation
    /// headers repeat, if it has one.
    pub fn first_header(
        &mut self,
        out: &mut BytesMut,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        type_id: u8,
        total: usize,
    ) -> Option<u32> {
        let length = u32::try_from(total).unwrap_or(u32::MAX).min(0x00FF_FFFF);
        let prev = self.streams.iter().position(|s| s.csid == csid);
        let (fmt, field) = match prev.map(|i| self.streams[i]) {
            Some(p) if p.stream_id == stream_id && timestamp >= p.timestamp => {
                let delta = timestamp - p.timestamp;
                if p.type_id == type_id && p.length == length {
                    if delta == p.ts_field {
                        (3u8, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            }
            _ => (0, timestamp),
        };
        let state = SendState {
            csid,
            timestamp,
            ts_field: field,
            length,
            type_id,
            stream_id,
        };
        match prev {
            Some(i) => self.streams[i] = state,
            None => {
                // Past 16 streams, a new one only costs header compression.
                if self.streams.len() < MAX_SEND_STREAMS {
                    // One more at a time, as in the decoder's table.
                    self.streams.reserve_exact(1);
                    self.streams.push(state);
                }
            }
        }
        let extended = field >= EXTENDED;
        let field24 = field.min(EXTENDED);
        Self::basic_header(out, fmt, csid);
        if fmt <= 2 {
            out.put_slice(&field24.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.put_slice(&length.to_be_bytes()[1..]);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        if extended {
            out.put_u32(field);
            Some(field)
        } else {
            None
        }
    }

    /// Writes what follows a message's first header: its bytes, `cs` at a
    /// time, with a continuation header (type 3, repeating the extended time
    /// stamp `ext` if there is one) before each chunk after the first. Past
    /// 16 MiB - 1 bytes nothing is written, as the length field says.
    pub fn body(out: &mut BytesMut, cs: usize, csid: u32, ext: Option<u32>, parts: &[&[u8]]) {
        let length = parts
            .iter()
            .map(|p| p.len())
            .sum::<usize>()
            .min(0x00FF_FFFF);
        let mut in_chunk = 0usize;
        let mut written = 0usize;
        for part in parts {
            let mut p = *part;
            while !p.is_empty() && written < length {
                if in_chunk == cs {
                    Self::basic_header(out, 3, csid);
                    if let Some(field) = ext {
                        out.put_u32(field);
                    }
                    in_chunk = 0;
                }
                let n = (cs - in_chunk).min(p.len()).min(length - written);
                out.put_slice(&p[..n]);
                p = &p[n..];
                in_chunk += n;
                written += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn type0_then_type3_continuation_with_extended_timestamp() {
        let mut e = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let payload = vec![0xAB; 300];
        e.write(&mut out, 6, 1, 0x0100_0000, 9, &[&payload]);
        // 12 + 4 (ext) + 128, then 2 x (1 + 4 + ...)
        assert_eq!(out.len(), 12 + 4 + 300 + 2 * 5);
        let mut d = ChunkDecoder::new(1 << 20, 8);
        let m = d.read(&mut out).unwrap().unwrap();
        assert_eq!(m.header.timestamp, 0x0100_0000);
        assert_eq!(&m.payload[..], &payload[..]);
        assert!(out.is_empty());
    }

    #[test]
    fn continuation_without_extended_timestamp_is_tolerated() {
        // A type-0 chunk with an extended timestamp, then a type-3
        // continuation that leaves the extended timestamp off.
        let mut b = BytesMut::new();
        b.put_u8(0x04);
        b.put_slice(&[0xFF, 0xFF, 0xFF, 0, 0, 134, 8]);
        b.put_u32_le(1);
        b.put_u32(0x0123_4567);
        b.put_slice(&[1u8; 128]);
        b.put_u8(0xC4);
        b.put_slice(&[2u8; 6]);
        let mut d = ChunkDecoder::new(1 << 20, 8);
        let m = d.read(&mut b).unwrap().unwrap();
        assert_eq!(m.header.timestamp, 0x0123_4567);
        assert_eq!(m.payload.len(), 134);
        assert_eq!(&m.payload[128..], &[2; 6]);
    }

    #[test]
    fn unfinished_messages_are_bounded_together() {
        // 8 chunk streams each start a 1000-byte message (limit 1000, so
        // 2000 together) and send 300 bytes of it.
        let mut d = ChunkDecoder::new(1000, 16);
        d.set_chunk_size(300).unwrap();
        let mut b = BytesMut::new();
        for csid in 3..11u8 {
            b.put_slice(&[csid, 0, 0, 0, 0, 0x03, 0xE8, 9, 1, 0, 0, 0]);
            b.put_slice(&[0u8; 300]);
        }
        assert!(matches!(
            d.read(&mut b),
            Err(RtmpError::ReassemblyTooLarge { max: 2000, .. })
        ));
        // Abort gives the room back.
        let mut d = ChunkDecoder::new(1000, 16);
        d.set_chunk_size(300).unwrap();
        for csid in 3..11u8 {
            let mut b = BytesMut::new();
            b.put_slice(&[csid, 0, 0, 0, 0, 0x03, 0xE8, 9, 1, 0, 0, 0]);
            b.put_slice(&[0u8; 300]);
            assert!(d.read(&mut b).unwrap().is_none());
            d.abort(u32::from(csid));
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let mut d = ChunkDecoder::new(1000, 2);
        let mut b = BytesMut::from(&[0x03, 0, 0, 0, 0, 0x10, 0, 8, 0, 0, 0, 0][..]);
        assert!(matches!(
            d.read(&mut b),
            Err(RtmpError::MessageTooLarge { .. })
        ));
        let mut d = ChunkDecoder::new(1000, 2);
        let mut b = BytesMut::new();
        for csid in 3..6u8 {
            b.put_slice(&[csid, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0]);
        }
        assert!(d.read(&mut b).unwrap().is_some());
        assert!(d.read(&mut b).unwrap().is_some());
        assert!(matches!(
            d.read(&mut b),
            Err(RtmpError::TooManyChunkStreams { .. })
        ));
        assert_eq!(d.set_chunk_size(0), Err(RtmpError::InvalidChunkSize(0)));
        assert!(d.set_chunk_size(0x8000_0000).is_err());
        let mut b = BytesMut::from(&[0x43, 0, 0, 0, 0, 0, 1, 8][..]);
        assert!(matches!(
            ChunkDecoder::new(10, 2).read(&mut b),
            Err(RtmpError::NoPreviousHeader { .. })
        ));
    }

    #[derive(Debug, Clone)]
    struct Msg {
        csid: u32,
        stream_id: u32,
        ts: u32,
        type_id: u8,
        payload: Vec<u8>,
    }

    fn arb_msg() -> impl Strategy<Value = Msg> {
        (
            prop_oneof![2u32..10, 60u32..70, 318u32..330, 65_000u32..65_599],
            0u32..3,
            prop_oneof![0u32..100, 0xFF_FFF0u32..0x100_0010, any::<u32>()],
            1u8..30,
            prop::collection::vec(any::<u8>(), 0..700),
        )
            .prop_map(|(csid, stream_id, ts, type_id, payload)| Msg {
                csid,
                stream_id,
                ts,
                type_id,
                payload,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            msgs in prop::collection::vec(arb_msg(), 1..30),
            chunk_size in prop_oneof![1u32..300, Just(4096u32), Just(65_536u32)],
            split in 1usize..500,
        ) {
            let mut e = ChunkEncoder::new();
            e.set_chunk_size(chunk_size);
            let mut d = ChunkDecoder::new(1 << 20, MAX_CHUNK_STREAMS);
            d.set_chunk_size(chunk_size).unwrap();
            let mut wire = BytesMut::new();
            let mut last_ts: Vec<(u32, u32)> = Vec::new();
            let mut sent = Vec::new();
            for mut m in msgs {
                // Timestamps per chunk stream move forward (as RTMP requires
                // for the delta forms) or restart via a type-0 header.
                if let Some(p) = last_ts.iter_mut().find(|p| p.0 == m.csid) {
                    if m.ts < p.1 { m.ts = p.1.wrapping_add(m.ts % 50); if m.ts < p.1 { m.ts = p.1; } }
                    p.1 = m.ts;
                } else {
                    last_ts.push((m.csid, m.ts));
                }
                e.write(&mut wire, m.csid, m.stream_id, m.ts, m.type_id, &[&m.payload]);
                sent.push(m);
            }
            let wire = wire.freeze();
            let mut got = Vec::new();
            let mut buf = BytesMut::new();
            for piece in wire.chunks(split) {
                buf.extend_from_slice(piece);
                while let Some(m) = d.read(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(got.len(), sent.len());
            for (g, s) in got.iter().zip(&sent) {
                prop_assert_eq!(g.header.csid, s.csid);
                prop_assert_eq!(g.header.stream_id, s.stream_id);
                prop_assert_eq!(g.header.timestamp, s.ts);
                prop_assert_eq!(g.header.type_id, s.type_id);
                prop_assert_eq!(&g.payload[..], &s.payload[..]);
            }
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let mut d = ChunkDecoder::new(1 << 16, 8);
            let mut b = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = d.read(&mut b) {}
        }
    }
}
