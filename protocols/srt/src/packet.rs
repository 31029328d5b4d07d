//! SRT packets on the wire (draft-sharabayko-srt §3): the 16-byte header,
//! data packets, and the control packets with their bodies. Parsing never
//! panics and never allocates for a data packet (its payload is a slice of
//! the datagram).

use bytes::{BufMut, Bytes, BytesMut};

use crate::handshake::Handshake;
use crate::seq::Seq;

/// The header's length.
pub const HEADER_LEN: usize = 16;

/// What is wrong with a datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than its header or than its body needs.
    #[error("{what} of {len} bytes is too short")]
    Short {
        /// What was being read.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("bad {0}")]
    Bad(&'static str),
}

/// Where a packet lies in its message (`PP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// In the middle.
    Middle,
    /// The last packet.
    Last,
    /// The first packet.
    First,
    /// The only packet (live mode sends every packet so).
    Solo,
}

impl Position {
    fn from_bits(b: u32) -> Self {
        match b & 3 {
            0 => Position::Middle,
            1 => Position::Last,
            2 => Position::First,
            _ => Position::Solo,
        }
    }
    fn bits(self) -> u32 {
        match self {
            Position::Middle => 0,
            Position::Last => 1,
            Position::First => 2,
            Position::Solo => 3,
        }
    }
}

/// Which key encrypted a payload (`KK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFlag {
    /// Not encrypted.
    Clear,
    /// The even key.
    Even,
    /// The odd key.
    Odd,
}

/// A data packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataPacket {
    /// Its sequence number.
    pub seq: Seq,
    /// Where it lies in its message.
    pub position: Position,
    /// Whether the message must be delivered in order.
    pub in_order: bool,
    /// Its key.
    pub key: KeyFlag,
    /// Whether this is a retransmission.
    pub retransmitted: bool,
    /// Its message number.
    pub msg_no: u32,
    /// Microseconds since the sender's connection started (wraps).
    pub timestamp: u32,
    /// The receiver's socket id.
    pub dest: u32,
    /// The payload.
    pub payload: Bytes,
}

/// The body of a full or light ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AckInfo {
    /// The first sequence number not received (all before it were).
    pub last: Seq,
    /// Round-trip time, µs (0 in a light ACK).
    pub rtt: u32,
    /// Its variance, µs.
    pub rtt_var: u32,
    /// Room in the receiver's buffer, packets.
    pub avail: u32,
    /// Packets received per second.
    pub pkt_rate: u32,
    /// Estimated link capacity, packets per second.
    pub capacity: u32,
    /// Bytes received per second.
    pub recv_rate: u32,
    /// A light ACK (only `last` is carried).
    pub light: bool,
}

/// The control packets (type field values in comments).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// 0: the handshake.
    Handshake(Handshake),
    /// 1: nothing, to keep the connection alive.
    KeepAlive,
    /// 2: what was received; `ack_no` is echoed by the ACKACK (0 for a light
    /// ACK).
    Ack {
        /// The ACK's number.
        ack_no: u32,
        /// Its body.
        info: AckInfo,
    },
    /// 3: packets lost, as inclusive ranges.
    Nak(Vec<(Seq, Seq)>),
    /// 4: congestion warning (unused in live mode).
    CongestionWarning,
    /// 5: the peer closes.
    Shutdown,
    /// 6: the answer to an ACK, for the RTT.
    AckAck {
        /// The ACK's number.
        ack_no: u32,
    },
    /// 7: the sender dropped a message; do not wait for it.
    DropReq {
        /// Its message number.
        msg_no: u32,
        /// Its first packet.
        first: Seq,
        /// Its last packet.
        last: Seq,
    },
    /// 8: an error at the peer.
    PeerError(u32),
    /// 0x7FFF: an extension message, e.g. key material refresh (subtype 3
    /// KMREQ, 4 KMRSP).
    User {
        /// The subtype.
        subtype: u16,
        /// The body.
        body: Bytes,
    },
    /// Another type.
    Unknown {
        /// The type.
        kind: u16,
        /// The subtype.
        subtype: u16,
        /// The type-specific word.
        info: u32,
        /// The body.
        body: Bytes,
    },
}

/// A control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    /// Microseconds since the sender's connection started.
    pub timestamp: u32,
    /// The receiver's socket id (0 for a connection request).
    pub dest: u32,
    /// What it says.
    pub control: Control,
}

/// A packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Data.
    Data(DataPacket),
    /// Control.
    Control(ControlPacket),
}

/// The destination socket id of a datagram, if it has a header.
pub fn dest_of(d: &[u8]) -> Option<u32> {
    d.get(12..16)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether a datagram is a control packet of type `kind`.
pub fn is_control(d: &[u8], kind: u16) -> bool {
    d.len() >= HEADER_LEN && d[0] & 0x80 != 0 && u16::from_be_bytes([d[0], d[1]]) & 0x7FFF == kind
}

fn be32(d: &[u8], at: usize) -> u32 {
    match d.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

impl Packet {
    /// Parses one datagram.
    pub fn parse(d: Bytes) -> Result<Packet, PacketError> {
        if d.len() < HEADER_LEN {
            return Err(PacketError::Short {
                what: "packet",
                len: d.len(),
            });
        }
        let w0 = be32(&d, 0);
        let w1 = be32(&d, 4);
        let timestamp = be32(&d, 8);
        let dest = be32(&d, 12);
        if w0 & 0x8000_0000 == 0 {
            let key = match (w1 >> 27) & 3 {
                0 => KeyFlag::Clear,
                1 => KeyFlag::Even,
                2 => KeyFlag::Odd,
                _ => return Err(PacketError::Bad("key flags")),
            };
            return Ok(Packet::Data(DataPacket {
                seq: Seq::new(w0),
                position: Position::from_bits(w1 >> 30),
                in_order: w1 & (1 << 29) != 0,
                key,
                retransmitted: w1 & (1 << 26) != 0,
                msg_no: w1 & crate::seq::MAX_MSG,
                timestamp,
                dest,
                payload: d.slice(HEADER_LEN..),
            }));
        }
        let kind = ((w0 >> 16) & 0x7FFF) as u16;
        let subtype = (w0 & 0xFFFF) as u16;
        let body = &d[HEADER_LEN..];
        let control = match kind {
            0 => Control::Handshake(Handshake::parse(body)?),
            1 => Control::KeepAlive,
            2 => Control::Ack {
                ack_no: w1,
                info: parse_ack(body)?,
            },
            3 => Control::Nak(parse_loss(body)?),
            4 => Control::CongestionWarning,
            5 => Control::Shutdown,
            6 => Control::AckAck { ack_no: w1 },
            7 => {
                if body.len() < 8 {
                    return Err(PacketError::Short {
                        what: "drop request",
                        len: body.len(),
                    });
                }
                Control::DropReq {
                    msg_no: w1,
                    first: Seq::new(be32(body, 0)),
                    last: Seq::new(be32(body, 4)),
                }
            }
            8 => Control::PeerError(w1),
            0x7FFF => Control::User {
                subtype,
                body: d.slice(HEADER_LEN..),
            },
            _ => Control::Unknown {
                kind,
                subtype,
                info: w1,
                body: d.slice(HEADER_LEN..),
            },
        };
        Ok(Packet::Control(ControlPacket {
            timestamp,
            dest,
            control,
        }))
    }
}

fn parse_ack(b: &[u8]) -> Result<AckInfo, PacketError> {
    if b.len() < 4 {
        return Err(PacketError::Short {
            what: "ACK",
            len: b.len(),
        });
    }
    let mut a = AckInfo {
        last: Seq::new(be32(b, 0)),
        light: b.len() < 16,
        ..AckInfo::default()
    };
    if b.len() >= 16 {
        a.rtt = be32(b, 4);
        a.rtt_var = be32(b, 8);
        a.avail = be32(b, 12);
    }
    if b.len() >= 28 {
        a.pkt_rate = be32(b, 16);
        a.capacity = be32(b, 20);
        a.recv_rate = be32(b, 24);
    }
    Ok(a)
}

/// The loss list encoding: a number with the top bit set starts a range
/// that the next number ends.
fn parse_loss(b: &[u8]) -> Result<Vec<(Seq, Seq)>, PacketError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let w = be32(b, i);
        i += 4;
        if w & 0x8000_0000 != 0 {
            if i + 4 > b.len() {
                return Err(PacketError::Bad("loss range without its end"));
            }
            let end = be32(b, i);
            i += 4;
            let (a, z) = (Seq::new(w), Seq::new(end));
            if z.diff(a) < 0 {
                return Err(PacketError::Bad("loss range that ends before it starts"));
            }
            out.push((a, z));
        } else {
            out.push((Seq::new(w), Seq::new(w)));
        }
        if out.len() > 4096 {
            return Err(PacketError::Bad("loss list longer than 4096 ranges"));
        }
    }
    Ok(out)
}

fn control_header(out: &mut BytesMut, kind: u16, subtype: u16, info: u32, ts: u32, dest: u32) {
    out.put_u32(0x8000_0000 | (u32::from(kind) << 16) | u32::from(subtype));
    out.put_u32(info);
    out.put_u32(ts);
    out.put_u32(dest);
}

impl DataPacket {
    /// Writes the header (the payload follows it).
    pub fn write_header(&self, out: &mut BytesMut) {
        out.put_u32(self.seq.get());
        let kk = match self.key {
            KeyFlag::Clear => 0,
            KeyFlag::Even => 1,
            KeyFlag::Odd => 2,
        };
        out.put_u32(
            (self.position.bits() << 30)
                | (u32::from(self.in_order) << 29)
                | (kk << 27)
                | (u32::from(self.retransmitted) << 26)
                | (self.msg_no & crate::seq::MAX_MSG),
        );
        out.put_u32(self.timestamp);
        out.put_u32(self.dest);
    }

    /// The whole packet.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        self.write_header(&mut out);
        out.put_slice(&self.payload);
        out.freeze()
    }
}

impl ControlPacket {
    /// The whole packet.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        let (ts, dest) = (self.timestamp, self.dest);
        match &self.control {
            Control::Handshake(h) => {
                control_header(&mut out, 0, 0, 0, ts, dest);
                h.write(&mut out);
            }
            Control::KeepAlive => control_header(&mut out, 1, 0, 0, ts, dest),
            Control::Ack { ack_no, info } => {
                control_header(&mut out, 2, 0, *ack_no, ts, dest);
                out.put_u32(info.last.get());
                if !info.light {
                    for w in [
                        info.rtt,
                        info.rtt_var,
                        info.avail,
                        info.pkt_rate,
                        info.capacity,
                        info.recv_rate,
                    ] {
                        out.put_u32(w);
                    }
                }
            }
            Control::Nak(ranges) => {
                control_header(&mut out, 3, 0, 0, ts, dest);
                for (a, z) in ranges {
                    if a == z {
                        out.put_u32(a.get());
                    } else {
                        out.put_u32(a.get() | 0x8000_0000);
                        out.put_u32(z.get());
                    }
                }
            }
            Control::CongestionWarning => control_header(&mut out, 4, 0, 0, ts, dest),
            Control::Shutdown => {
                control_header(&mut out, 5, 0, 0, ts, dest);
                // libsrt sends four bytes of body with its shutdown.
                out.put_u32(0);
            }
            Control::AckAck { ack_no } => {
                control_header(&mut out, 6, 0, *ack_no, ts, dest);
                out.put_u32(0);
            }
            Control::DropReq {
                msg_no,
                first,
                last,
            } => {
                control_header(&mut out, 7, 0, *msg_no, ts, dest);
                out.put_u32(first.get());
                out.put_u32(last.get());
            }
            Control::PeerError(code) => control_header(&mut out, 8, 0, *code, ts, dest),
            Control::User { subtype, body } => {
                control_header(&mut out, 0x7FFF, *subtype, 0, ts, dest);
                out.put_slice(body);
            }
            Control::Unknown {
                kind,
                subtype,
                info,
                body,
            } => {
                control_header(&mut out, *kind & 0x7FFF, *subtype, *info, ts, dest);
                out.put_slice(body);
            }
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(c: Control) {
        let p = ControlPacket {
            timestamp: 77,
            dest: 0xABCD,
            control: c,
        };
        let b = p.to_bytes();
        assert_eq!(Packet::parse(b).ok(), Some(Packet::Control(p)));
    }

    #[test]
    fn control_packets_round_trip() {
        round(Control::KeepAlive);
        round(Control::Shutdown);
        round(Control::AckAck { ack_no: 9 });
        round(Control::Nak(vec![
            (Seq::new(5), Seq::new(5)),
            (Seq::new(9), Seq::new(20)),
        ]));
        round(Control::Ack {
            ack_no: 3,
            info: AckInfo {
                last: Seq::new(100),
                rtt: 1000,
                rtt_var: 50,
                avail: 8000,
                pkt_rate: 90,
                capacity: 1000,
                recv_rate: 120_000,
                light: false,
            },
        });
        round(Control::Ack {
            ack_no: 0,
            info: AckInfo {
                last: Seq::new(7),
                light: true,
                ..AckInfo::default()
            },
        });
        round(Control::DropReq {
            msg_no: 4,
            first: Seq::new(1),
            last: Seq::new(3),
        });
    }

    #[test]
    fn data_packet_round_trips() {
        let p = DataPacket {
            seq: Seq::new(0x7FFF_FFF0),
            position: Position::Solo,
            in_order: false,
            key: KeyFlag::Odd,
            retransmitted: true,
            msg_no: 12345,
            timestamp: u32::MAX,
            dest: 1,
            payload: Bytes::from_static(b"abc"),
        };
        assert_eq!(
            Packet::parse(p.to_bytes()).ok(),
            Some(Packet::Data(p.clone()))
        );
        assert_eq!(dest_of(&p.to_bytes()), Some(1));
    }

    #[test]
    fn short_and_bad_input_is_an_error() {
        assert!(Packet::parse(Bytes::from_static(&[0x80; 15])).is_err());
        // A loss range missing its end.
        let mut b = BytesMut::new();
        control_header(&mut b, 3, 0, 0, 0, 0);
        b.put_u32(0x8000_0005);
        assert!(Packet::parse(b.freeze()).is_err());
    }
}
