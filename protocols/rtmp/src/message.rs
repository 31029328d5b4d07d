//! RTMP messages (RTMP specification 1.0, sections 5.4, 6 and 7): protocol
//! control (Set Chunk Size, Abort, Acknowledgement, Window Acknowledgement
//! Size, Set Peer Bandwidth), User Control events, audio and video (FLV tag
//! bodies), data and command messages in AMF0 or AMF3, and aggregates.

use crate::amf0::{self, Amf0Value};
use crate::amf3;
use crate::chunk::RawMessage;
use crate::error::{Result, RtmpError};
use bytes::{BufMut, Bytes};

/// Message type ids.
pub mod type_id {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio.
    pub const AUDIO: u8 = 8;
    /// Video.
    pub const VIDEO: u8 = 9;
    /// Data message in AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object in AMF3.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command in AMF3.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message in AMF0.
    pub const DATA_AMF0: u8 = 18;
    /// Shared object in AMF0.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command in AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate (FLV tags back to back).
    pub const AGGREGATE: u8 = 22;
}

/// A User Control event (section 7.1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserControl {
    /// The stream is ready for data.
    StreamBegin(u32),
    /// The stream has no more data.
    StreamEof(u32),
    /// The stream has no more data for now.
    StreamDry(u32),
    /// The client's buffer length in milliseconds.
    SetBufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Milliseconds.
        millis: u32,
    },
    /// The stream is recorded.
    StreamIsRecorded(u32),
    /// A ping with the sender's timestamp.
    PingRequest(u32),
    /// The answer to a ping.
    PingResponse(u32),
    /// An event this crate does not interpret.
    Other {
        /// Event type.
        event: u16,
    },
}

impl UserControl {
    fn decode(b: &[u8]) -> Result<Self> {
        let bad = || RtmpError::InvalidMessage {
            type_id: type_id::USER_CONTROL,
            what: "short user control event",
        };
        if b.len() < 2 {
            return Err(bad());
        }
        let event = u16::from_be_bytes([b[0], b[1]]);
        let arg = |i: usize| -> Result<u32> {
            b.get(2 + 4 * i..6 + 4 * i)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(bad)
        };
        Ok(match event {
            0 => UserControl::StreamBegin(arg(0)?),
            1 => UserControl::StreamEof(arg(0)?),
            2 => UserControl::StreamDry(arg(0)?),
            3 => UserControl::SetBufferLength {
                stream_id: arg(0)?,
                millis: arg(1)?,
            },
            4 => UserControl::StreamIsRecorded(arg(0)?),
            6 => UserControl::PingRequest(arg(0)?),
            7 => UserControl::PingResponse(arg(0)?),
            _ => UserControl::Other { event },
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (ev, a, b) = match *self {
            UserControl::StreamBegin(s) => (0u16, s, None),
            UserControl::StreamEof(s) => (1, s, None),
            UserControl::StreamDry(s) => (2, s, None),
            UserControl::SetBufferLength { stream_id, millis } => (3, stream_id, Some(millis)),
            UserControl::StreamIsRecorded(s) => (4, s, None),
            UserControl::PingRequest(t) => (6, t, None),
            UserControl::PingResponse(t) => (7, t, None),
            UserControl::Other { event } => (event, 0, None),
        };
        out.put_u16(ev);
        out.put_u32(a);
        if let Some(b) = b {
            out.put_u32(b);
        }
    }
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq)]
pub enum RtmpMessage {
    /// The sender's new chunk size.
    SetChunkSize(u32),
    /// Discard the partial message on this chunk stream.
    Abort(u32),
    /// Bytes received so far by the sender.
    Acknowledgement(u32),
    /// A User Control event.
    UserControl(UserControl),
    /// Acknowledge every this many bytes.
    WindowAckSize(u32),
    /// Limit the sender's output bandwidth.
    SetPeerBandwidth {
        /// Window size.
        size: u32,
        /// 0 hard, 1 soft, 2 dynamic.
        limit: u8,
    },
    /// An FLV audio tag body.
    Audio(Bytes),
    /// An FLV video tag body.
    Video(Bytes),
    /// A data message (`@setDataFrame`, `onMetaData`, ...), AMF0 or AMF3.
    Data(Vec<Amf0Value>),
    /// A command (`connect`, `publish`, `_result`, ...), AMF0 or AMF3.
    Command(Vec<Amf0Value>),
    /// Shared-object messages, which are not interpreted.
    SharedObject,
    /// FLV tags back to back (type 22).
    Aggregate(Bytes),
}

fn u32_body(m: &RawMessage) -> Result<u32> {
    let p = &m.payload;
    if p.len() < 4 {
        return Err(RtmpError::InvalidMessage {
            type_id: m.header.type_id,
            what: "body shorter than 4 bytes",
        });
    }
    Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

impl RtmpMessage {
    /// Decodes a message from the chunk layer; AMF nesting is limited to
    /// `max_depth`.
    pub fn decode(m: &RawMessage, max_depth: usize) -> Result<Self> {
        use type_id::*;
        Ok(match m.header.type_id {
            SET_CHUNK_SIZE => RtmpMessage::SetChunkSize(u32_body(m)?),
            ABORT => RtmpMessage::Abort(u32_body(m)?),
            ACKNOWLEDGEMENT => RtmpMessage::Acknowledgement(u32_body(m)?),
            USER_CONTROL => RtmpMessage::UserControl(UserControl::decode(&m.payload)?),
            WINDOW_ACK_SIZE => RtmpMessage::WindowAckSize(u32_body(m)?),
            SET_PEER_BANDWIDTH => RtmpMessage::SetPeerBandwidth {
                size: u32_body(m)?,
                limit: m.payload.get(4).copied().unwrap_or(2),
            },
            AUDIO => RtmpMessage::Audio(m.payload.clone()),
            VIDEO => RtmpMessage::Video(m.payload.clone()),
            DATA_AMF0 => RtmpMessage::Data(amf0::decode_all(&m.payload, max_depth)?),
            DATA_AMF3 => RtmpMessage::Data(amf3::decode_command(&m.payload, max_depth)?),
            COMMAND_AMF0 => RtmpMessage::Command(amf0::decode_all(&m.payload, max_depth)?),
            COMMAND_AMF3 => RtmpMessage::Command(amf3::decode_command(&m.payload, max_depth)?),
            SHARED_OBJECT_AMF0 | SHARED_OBJECT_AMF3 => RtmpMessage::SharedObject,
            AGGREGATE => RtmpMessage::Aggregate(m.payload.clone()),
            t => {
                return Err(RtmpError::UnknownMessageType {
                    type_id: t,
                    stream: m.header.stream_id,
                })
            }
        })
    }

    /// The message type id and body, for the chunk encoder. Audio, video
    /// and aggregate bodies are returned as they are.
    pub fn encode(&self) -> (u8, Bytes) {
        use type_id::*;
        let mut out = Vec::with_capacity(16);
        let t = match self {
            RtmpMessage::SetChunkSize(v) => {
                out.put_u32(*v & 0x7FFF_FFFF);
                SET_CHUNK_SIZE
            }
            RtmpMessage::Abort(v) => {
                out.put_u32(*v);
                ABORT
            }
            RtmpMessage::Acknowledgement(v) => {
                out.put_u32(*v);
                ACKNOWLEDGEMENT
            }
            RtmpMessage::UserControl(u) => {
                u.encode(&mut out);
                USER_CONTROL
            }
            RtmpMessage::WindowAckSize(v) => {
                out.put_u32(*v);
                WINDOW_ACK_SIZE
            }
            RtmpMessage::SetPeerBandwidth { size, limit } => {
                out.put_u32(*size);
                out.put_u8(*limit);
                SET_PEER_BANDWIDTH
            }
            RtmpMessage::Audio(b) => return (AUDIO, b.clone()),
            RtmpMessage::Video(b) => return (VIDEO, b.clone()),
            RtmpMessage::Aggregate(b) => return (AGGREGATE, b.clone()),
            RtmpMessage::Data(v) => {
                out = amf0::encode_all(v);
                DATA_AMF0
            }
            RtmpMessage::Command(v) => {
                out = amf0::encode_all(v);
                COMMAND_AMF0
            }
            RtmpMessage::SharedObject => return (SHARED_OBJECT_AMF0, Bytes::new()),
        };
        (t, Bytes::from(out))
    }
}

/// One FLV tag inside an aggregate message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatePart {
    /// 8 audio, 9 video, 18 data.
    pub tag_type: u8,
    /// The tag's timestamp (to be rebased on the aggregate's).
    pub timestamp: u32,
    /// The tag body.
    pub body: Bytes,
}

/// Splits an aggregate message body into its tags (FLV tag header, body,
/// previous-tag-size). Stops at the first truncated tag.
pub fn split_aggregate(body: &Bytes) -> Vec<AggregatePart> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while body.len() >= pos + 11 {
        let h = &body[pos..pos + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        let Some(end) = start.checked_add(size).filter(|&e| e <= body.len()) else {
            break;
        };
        out.push(AggregatePart {
            tag_type: h[0] & 0x1F,
            timestamp: ts,
            body: body.slice(start..end),
        });
        pos = end + 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::MessageHeader;

    fn raw(type_id: u8, payload: &[u8]) -> RawMessage {
        RawMessage {
            header: MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id,
                stream_id: 0,
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn control_round_trip() {
        for m in [
            RtmpMessage::SetChunkSize(4096),
            RtmpMessage::Abort(5),
            RtmpMessage::Acknowledgement(123),
            RtmpMessage::WindowAckSize(2_500_000),
            RtmpMessage::SetPeerBandwidth {
                size: 2_500_000,
                limit: 2,
            },
            RtmpMessage::UserControl(UserControl::StreamBegin(1)),
            RtmpMessage::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            }),
            RtmpMessage::UserControl(UserControl::PingRequest(77)),
            RtmpMessage::Command(vec![amf0::string("connect"), Amf0Value::Number(1.0)]),
        ] {
            let (t, b) = m.encode();
            assert_eq!(RtmpMessage::decode(&raw(t, &b), 8).unwrap(), m);
        }
    }

    #[test]
    fn unknown_and_short_messages_are_errors() {
        assert!(matches!(
            RtmpMessage::decode(&raw(99, &[]), 8),
            Err(RtmpError::UnknownMessageType { type_id: 99, .. })
        ));
        assert!(RtmpMessage::decode(&raw(1, &[0, 0]), 8).is_err());
        assert!(RtmpMessage::decode(&raw(4, &[0]), 8).is_err());
    }

    #[test]
    fn aggregate_split() {
        let mut b = Vec::new();
        for (t, ts, body) in [(9u8, 10u32, &b"abc"[..]), (8, 20, &b"de"[..])] {
            b.push(t);
            b.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            b.extend_from_slice(&ts.to_be_bytes()[1..]);
            b.push((ts >> 24) as u8);
            b.extend_from_slice(&[0, 0, 0]);
            b.extend_from_slice(body);
            b.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        }
        let parts = split_aggregate(&Bytes::from(b));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].timestamp, 20);
        assert_eq!(&parts[0].body[..], b"abc");
    }
}
