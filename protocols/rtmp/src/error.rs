//! The one error type of the crate: what the peer did wrong, and where.
//!
//! Every error is fatal to the session that met it (RTMP has no way to resync
//! a chunk stream), so a session reports it once as
//! `SessionEvent::Closed(SessionEnd::Protocol(e))` and stops reading: `e`
//! carries the [`RtmpError`] (reached with `ProtocolError::downcast_ref`),
//! its [kind](RtmpError::kind) and the byte offset where it was found.

use crate::command::StatusCode;
use arcly_core::session::{ProtocolError, ProtocolErrorKind, SessionEnd};

/// What went wrong while reading or writing RTMP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// C0/S0 named a protocol version this crate does not speak (3 is RTMP;
    /// 6 and 8 are the encrypted variants).
    #[error("handshake: unsupported RTMP version {0}")]
    UnsupportedVersion(u8),
    /// The handshake failed for the stated reason.
    #[error("handshake: {0}")]
    Handshake(&'static str),
    /// A chunk's message is longer than the configured maximum.
    #[error("chunk stream {csid}: message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The chunk stream id.
        csid: u32,
        /// The announced message length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// Half-received messages across all chunk streams hold more than the
    /// bound (twice the maximum message size).
    #[error("chunk stream {csid}: {held} bytes of unfinished messages exceed the limit of {max}")]
    ReassemblyTooLarge {
        /// The chunk stream whose chunk crossed the bound.
        csid: u32,
        /// Bytes that would be held.
        held: usize,
        /// The bound.
        max: usize,
    },
    /// The peer opened more chunk streams than the table holds.
    #[error("chunk stream {csid}: more than {max} chunk streams in use")]
    TooManyChunkStreams {
        /// The chunk stream id that did not fit.
        csid: u32,
        /// The table's size.
        max: usize,
    },
    /// A compressed chunk header (type 1, 2 or 3) on a chunk stream with no
    /// previous header to inherit from.
    #[error("chunk stream {csid}: header type {fmt} with no previous header")]
    NoPreviousHeader {
        /// The chunk stream id.
        csid: u32,
        /// The chunk header type (0-3).
        fmt: u8,
    },
    /// A new message header arrived while a message was half received.
    #[error("chunk stream {csid}: header type {fmt} in the middle of a message")]
    InterruptedMessage {
        /// The chunk stream id.
        csid: u32,
        /// The chunk header type (1 or 2).
        fmt: u8,
    },
    /// Set Chunk Size of 0 or above 2^31 - 1.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A message type this crate does not know.
    #[error("message stream {stream}: unknown message type {type_id}")]
    UnknownMessageType {
        /// The message type id.
        type_id: u8,
        /// The message stream id.
        stream: u32,
    },
    /// A message whose body does not parse.
    #[error("message type {type_id}: {what}")]
    InvalidMessage {
        /// The message type id.
        type_id: u8,
        /// What is wrong.
        what: &'static str,
    },
    /// AMF data that does not parse.
    #[error("AMF at byte {offset}: {what}")]
    Amf {
        /// Offset of the failing value within the encoded data.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// AMF values nested deeper than the configured limit.
    #[error("AMF values nested deeper than {0}")]
    AmfTooDeep(usize),
    /// A command with missing or mistyped arguments.
    #[error("command {name:?}: {what}")]
    InvalidCommand {
        /// The command name.
        name: String,
        /// What is wrong.
        what: &'static str,
    },
    /// An FLV audio or video tag that does not parse.
    #[error("FLV {kind} tag: {what}")]
    InvalidTag {
        /// `"audio"` or `"video"`.
        kind: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// The peer sent more than the configured bound while a request was
    /// waiting for the host's answer.
    #[error("{0} bytes buffered while waiting for the host; limit exceeded")]
    InputBacklog(usize),
    /// The peer opened more message streams than allowed.
    #[error("more than {0} message streams")]
    TooManyStreams(usize),
    /// The server refused what a client session asked (an `onStatus` of
    /// level `error`, `NetConnection.Connect.Rejected`, or an `_error`
    /// answer).
    #[error("server refused {stage}: {status}")]
    Refused {
        /// What was refused: `"connect"`, `"createStream"`, `"publish"` or
        /// `"play"`.
        stage: &'static str,
        /// The server's code.
        status: StatusCode,
    },
}

impl RtmpError {
    /// Which kind of protocol error this is, for a host that does not know
    /// RTMP.
    pub fn kind(&self) -> ProtocolErrorKind {
        match self {
            RtmpError::UnsupportedVersion(_) | RtmpError::UnknownMessageType { .. } => {
                ProtocolErrorKind::Unsupported
            }
            RtmpError::MessageTooLarge { .. }
            | RtmpError::ReassemblyTooLarge { .. }
            | RtmpError::TooManyChunkStreams { .. }
            | RtmpError::AmfTooDeep(_)
            | RtmpError::InputBacklog(_)
            | RtmpError::TooManyStreams(_) => ProtocolErrorKind::LimitExceeded,
            RtmpError::Handshake(_)
            | RtmpError::NoPreviousHeader { .. }
            | RtmpError::InterruptedMessage { .. }
            | RtmpError::InvalidChunkSize(_)
            | RtmpError::InvalidMessage { .. }
            | RtmpError::Amf { .. }
            | RtmpError::InvalidCommand { .. }
            | RtmpError::InvalidTag { .. } => ProtocolErrorKind::Malformed,
            RtmpError::Refused { status, .. } => ProtocolErrorKind::PeerRefused(status.rejection()),
        }
    }

    /// The session end for this error, found after `offset` bytes of the
    /// peer's input.
    pub fn into_end(self, offset: u64) -> SessionEnd {
        let kind = self.kind();
        SessionEnd::Protocol(ProtocolError::new("rtmp", kind, self).at(offset))
    }
}

/// The crate's result type.
pub type Result<T, E = RtmpError> = core::result::Result<T, E>;
