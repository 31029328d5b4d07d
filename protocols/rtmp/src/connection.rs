//! What server and client sessions share: the handshake, the chunk decoder
//! and encoder, protocol control messages (chunk size, abort, window and
//! acknowledgements, ping), and the output buffer.

use crate::amf0::Amf0Value;
use crate::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use crate::config::RtmpConfig;
use crate::error::{Result, RtmpError};
use crate::handshake::Handshake;
use crate::message::{RtmpMessage, UserControl};
use arcly_core::frame::WireCache;
use arcly_core::media::flv::{Tag, TagType};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Chunk stream for protocol control messages.
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for NetConnection commands.
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for audio.
pub const CSID_AUDIO: u32 = 4;
/// Chunk stream for NetStream commands and data.
pub const CSID_STREAM: u32 = 5;
/// Chunk stream for video.
pub const CSID_VIDEO: u32 = 6;

/// Messages at least this long share their body between players (a message
/// of one chunk its frame's payload, a longer one its chunked body); shorter
/// ones (most audio) are cheaper to copy than to queue apart.
const SHARED_MIN: usize = 1024;

/// The top bits of the [`WireCache`] format numbers RTMP uses (`RTMP`'s
/// first two letters), so no other protocol's form is taken for it.
const FORMAT_RTMP: u16 = 0x5254;

/// The chunk stream a tag's message goes on: script data on the stream's,
/// audio and video on their own.
fn csid_of(kind: TagType) -> u32 {
    match kind {
        TagType::Video => CSID_VIDEO,
        TagType::Audio => CSID_AUDIO,
        TagType::Script => CSID_STREAM,
    }
}

/// The chunk-level state of one RTMP connection.
#[derive(Debug)]
pub struct Connection {
    /// The configuration.
    pub cfg: RtmpConfig,
    handshake: Handshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// Where parsing happens: the front of the stream.
    input: BytesMut,
    /// The newest read, when `input` still held a partial chunk: bytes are
    /// moved from here only as far as that chunk needs, then this buffer
    /// becomes `input` without a copy.
    next: BytesMut,
    /// Output being written: headers, control and command messages, small
    /// media messages.
    output: BytesMut,
    /// Output ready for the socket ahead of `output`: finished pieces and
    /// the chunked bodies shared with other players, in order.
    queue: VecDeque<Bytes>,
    received: u64,
    acked: u64,
    peer_window: u32,
    /// The window this side last announced with Window Acknowledgement Size.
    announced_window: Option<u32>,
}

impl Connection {
    /// A connection with the given handshake side.
    pub fn new(cfg: RtmpConfig, handshake: Handshake) -> Self {
        let decoder = ChunkDecoder::new(cfg.max_message_size, cfg.max_chunk_streams);
        Connection {
            cfg,
            handshake,
            decoder,
            encoder: ChunkEncoder::new(),
            input: BytesMut::new(),
            next: BytesMut::new(),
            output: BytesMut::new(),
            queue: VecDeque::new(),
            received: 0,
            acked: 0,
            peer_window: 0,
            announced_window: None,
        }
    }

    /// Client: produce C0+C1.
    pub fn start_handshake(&mut self) {
        self.handshake.start(&mut self.output);
    }

    /// Whether the handshake is over.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_done()
    }

    /// The handshake.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// Appends bytes from the socket. The first buffer is kept as is, so
    /// payloads are cut from it without a copy.
    pub fn feed(&mut self, data: BytesMut) {
        if self.input.is_empty() && self.next.is_empty() {
            self.input = data;
        } else if self.next.is_empty() {
            self.next = data;
        } else {
            self.next.extend_from_slice(&data);
        }
    }

    /// Bytes of the connection consumed so far (handshake included): where
    /// in a capture of the connection the parser stands.
    pub fn consumed(&self) -> u64 {
        self.received
    }

    /// Bytes received and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.input.len() + self.next.len()
    }

    /// Runs the handshake and returns the next complete message, handling
    /// protocol control messages on the way (they are returned too, for
    /// callers that care). `Ok(None)`: need more bytes.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>> {
        let before = self.buffered();
        let r = self.next_inner();
        self.received += (before - self.buffered()) as u64;
        if self.peer_window > 0 && self.received - self.acked >= u64::from(self.peer_window) {
            self.acked = self.received;
            // The sequence number wraps at 2^32 as the specification says.
            self.send(
                CSID_CONTROL,
                0,
                0,
                &RtmpMessage::Acknowledgement(self.received as u32),
            );
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<RawMessage>> {
        if !self.handshake.is_done() {
            if !self.next.is_empty() {
                let next = core::mem::take(&mut self.next);
                self.input.extend_from_slice(&next);
            }
            if !self.handshake.read(&mut self.input, &mut self.output)? {
                return Ok(None);
            }
        }
        loop {
            if self.input.is_empty() {
                self.input = core::mem::take(&mut self.next);
            }
            if let Some(m) = self.decoder.read(&mut self.input)? {
                return Ok(Some(m));
            }
            if self.next.is_empty() {
                if self.input.is_empty() {
                    // Let go of the read buffer: an empty view still holds
                    // its whole allocation, for as long as the peer is quiet.
                    self.input = BytesMut::new();
                }
                return Ok(None);
            }
            // Complete the partial chunk from the newer buffer, copying only
            // what it lacks.
            let n = self.decoder.needed().min(self.next.len());
            let head = self.next.split_to(n);
            self.input.extend_from_slice(&head);
        }
    }

    /// Applies a protocol control message. Returns `true` if `m` was one.
    pub fn control(&mut self, m: &RtmpMessage) -> Result<bool> {
        match m {
            RtmpMessage::SetChunkSize(n) => self.decoder.set_chunk_size(*n)?,
            RtmpMessage::Abort(csid) => self.decoder.abort(*csid),
            RtmpMessage::WindowAckSize(n) => self.peer_window = *n,
            RtmpMessage::Acknowledgement(_) => {}
            // Section 5.4.5: answer a new peer bandwidth with our window.
            RtmpMessage::SetPeerBandwidth { size, .. } => {
                if self.announced_window != Some(*size) {
                    self.announce_window(*size);
                }
            }
            RtmpMessage::UserControl(UserControl::PingRequest(t)) => self.send(
                CSID_CONTROL,
                0,
                0,
                &RtmpMessage::UserControl(UserControl::PingResponse(*t)),
            ),
            RtmpMessage::UserControl(_) => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Queues a message.
    pub fn send(&mut self, csid: u32, stream_id: u32, timestamp: u32, m: &RtmpMessage) {
        let (t, body) = m.encode();
        self.encoder
            .write(&mut self.output, csid, stream_id, timestamp, t, &[&body]);
    }

    /// Queues a command (AMF0).
    pub fn send_command(&mut self, csid: u32, stream_id: u32, values: Vec<Amf0Value>) {
        self.send(csid, stream_id, 0, &RtmpMessage::Command(values));
    }

    /// Queues a data message (AMF0).
    pub fn send_data(&mut self, stream_id: u32, timestamp: u32, values: Vec<Amf0Value>) {
        self.send(
            CSID_STREAM,
            stream_id,
            timestamp,
            &RtmpMessage::Data(values),
        );
    }

    /// Queues an FLV tag as the message of its type: script data on the
    /// stream's chunk stream, audio and video on their own.
    pub fn send_tag(&mut self, stream_id: u32, tag: &Tag) {
        self.encoder.write(
            &mut self.output,
            csid_of(tag.kind),
            stream_id,
            tag.timestamp,
            tag.kind.id(),
            &[&tag.head, &tag.payload],
        );
    }

    /// Queues a frame's tag like [`send_tag`](Self::send_tag), sharing its
    /// body with every other player of the frame. A message that fits in
    /// one chunk is queued as the frame's own payload after the player's
    /// header and the tag's head; for a longer one the first player to send
    /// the frame in this chunking (chunk size and chunk stream) builds the
    /// chunked body once into `wire`, the others queue the same buffer after
    /// their own first header. The bytes are those `send_tag`
    /// writes. A small message, or one whose time stamp needs the extended
    /// field (repeated in every continuation header), is written as before.
    pub fn send_frame_tag(&mut self, stream_id: u32, tag: &Tag, wire: &WireCache) {
        let total = tag.len();
        if total < SHARED_MIN {
            return self.send_tag(stream_id, tag);
        }
        let csid = csid_of(tag.kind);
        let cs = self.encoder.chunk_size();
        let ext = self.encoder.first_header(
            &mut self.output,
            csid,
            stream_id,
            tag.timestamp,
            tag.kind.id(),
            total,
        );
        if ext.is_some() {
            ChunkEncoder::body(
                &mut self.output,
                cs as usize,
                csid,
                ext,
                &[&tag.head, &tag.payload],
            );
            return;
        }
        if total <= cs as usize {
            // One chunk: the body is the tag's head and then the frame's own
            // payload, queued as it is (nothing to build, nothing kept).
            self.output.extend_from_slice(&tag.head);
            self.queue
                .push_back(std::mem::take(&mut self.output).freeze());
            self.queue.push_back(tag.payload.clone());
            return;
        }
        // RTMP's chunking in one number: the chunk size and chunk stream.
        let format = (u64::from(FORMAT_RTMP) << 48) | (u64::from(cs) << 16) | u64::from(csid);
        let body = match wire.get(format) {
            Some(b) => b.clone(),
            None => {
                let mut b = BytesMut::with_capacity(total + total / cs as usize + 4);
                ChunkEncoder::body(&mut b, cs as usize, csid, None, &[&tag.head, &tag.payload]);
                let b = b.freeze();
                // A player that built it at the same moment keeps its own.
                let _ = wire.set(format, b.clone());
                b
            }
        };
        if !self.output.is_empty() {
            self.queue
                .push_back(std::mem::take(&mut self.output).freeze());
        }
        self.queue.push_back(body);
    }

    /// Sends Window Acknowledgement Size.
    pub fn announce_window(&mut self, size: u32) {
        self.announced_window = Some(size);
        self.send(CSID_CONTROL, 0, 0, &RtmpMessage::WindowAckSize(size));
    }

    /// Sends Set Chunk Size with the configured size and starts using it.
    pub fn announce_chunk_size(&mut self) {
        let size = self.cfg.chunk_size.clamp(1, crate::chunk::MAX_CHUNK_SIZE);
        self.send(CSID_CONTROL, 0, 0, &RtmpMessage::SetChunkSize(size));
        self.encoder.set_chunk_size(size);
    }

    /// Takes the next piece queued for the socket, in order (a shared
    /// chunked body is its own piece). Buffers go with their pieces, so an
    /// idle player holds no output memory once its last write is done.
    pub fn take_output(&mut self) -> Option<Bytes> {
        if let Some(b) = self.queue.pop_front() {
            arcly_core::host::shrink_drained(&mut self.queue);
            return Some(b);
        }
        if self.output.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.output).freeze())
        }
    }

    /// Whether output is queued.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty() || !self.queue.is_empty()
    }

    /// Drops unparsed input (after a fatal error).
    pub fn discard_input(&mut self) {
        self.input = BytesMut::new();
        self.next = BytesMut::new();
    }

    /// The error for a backlog over the limit, if it is.
    pub fn check_backlog(&self) -> Result<()> {
        if self.buffered() > self.cfg.max_backlog {
            Err(RtmpError::InputBacklog(self.buffered()))
        } else {
            Ok(())
        }
    }
}
