//! Limits and choices of an RTMP session. Every bound on what the peer can
//! make this side allocate is here.

use core::time::Duration;

/// Configuration shared by server and client sessions.
#[derive(Clone, Debug)]
pub struct RtmpConfig {
    /// Seed for the handshake's random bytes (randomness is an input): the
    /// host passes a different one per connection, e.g. from its own RNG.
    pub seed: u64,
    /// The chunk size this side sends with (announced by Set Chunk Size).
    pub chunk_size: u32,
    /// The largest message accepted from the peer, in bytes.
    pub max_message_size: u32,
    /// The most chunk streams the peer may use at once (at most
    /// [`MAX_CHUNK_STREAMS`](crate::chunk::MAX_CHUNK_STREAMS)).
    pub max_chunk_streams: usize,
    /// The deepest AMF nesting accepted.
    pub max_amf_depth: usize,
    /// The acknowledgement window this side asks of the peer.
    pub window_ack_size: u32,
    /// The peer bandwidth this side announces.
    pub peer_bandwidth: u32,
    /// Silence after which the session ends with `SessionEnd::Timeout`.
    pub idle_timeout: Duration,
    /// Bytes the peer may send ahead while a request waits for the host.
    pub max_backlog: usize,
    /// A publisher timestamp that jumps forward by more than this many
    /// milliseconds is repaired (backward steps always are).
    pub max_timestamp_jump_ms: u32,
    /// The most message streams (`createStream`) per connection.
    pub max_streams: u32,
    /// Client: offer the digest handshake (servers answer either form).
    pub digest_handshake: bool,
    /// Client: frames queued before the server has started the stream.
    pub max_queued_frames: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            seed: 0x005E_ED0F_A4C1_u64,
            chunk_size: 4096,
            max_message_size: 8 << 20,
            max_chunk_streams: 64,
            max_amf_depth: crate::amf0::DEFAULT_MAX_DEPTH,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            idle_timeout: Duration::from_secs(30),
            max_backlog: 4 << 20,
            max_timestamp_jump_ms: 10_000,
            max_streams: 8,
            digest_handshake: true,
            max_queued_frames: 1024,
        }
    }
}
