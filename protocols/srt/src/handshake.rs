//! The handshake control packet (draft-sharabayko-srt §3.2.1) and its HSv5
//! extensions: HSREQ/HSRSP, KMREQ/KMRSP, the stream id, and the rejection
//! codes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::packet::PacketError;
use crate::seq::Seq;

/// The handshake body's length without extensions.
pub const BODY_LEN: usize = 48;

/// The magic an HSv5 listener puts in the extension field of its induction
/// answer.
pub const HSV5_MAGIC: u16 = 0x4A17;

/// Extension flags (the extension field of a conclusion).
pub mod ext_flag {
    /// HSREQ/HSRSP present.
    pub const HSREQ: u16 = 0x1;
    /// KMREQ/KMRSP present.
    pub const KMREQ: u16 = 0x2;
    /// Other extensions (stream id, congestion, filter, group) present.
    pub const CONFIG: u16 = 0x4;
}

/// SRT flags of HSREQ/HSRSP.
pub mod srt_flag {
    /// The sender uses TSBPD.
    pub const TSBPDSND: u32 = 0x01;
    /// The receiver uses TSBPD.
    pub const TSBPDRCV: u32 = 0x02;
    /// Encryption is supported.
    pub const CRYPT: u32 = 0x04;
    /// Too-late packets are dropped.
    pub const TLPKTDROP: u32 = 0x08;
    /// Periodic NAK reports.
    pub const PERIODICNAK: u32 = 0x10;
    /// The retransmitted flag is in the message number field.
    pub const REXMITFLG: u32 = 0x20;
    /// Stream (not message) mode.
    pub const STREAM: u32 = 0x40;
    /// A packet filter is configured.
    pub const PACKET_FILTER: u32 = 0x80;
    /// What our live connections ask for and answer with: TSBPD both ways,
    /// too-late drop, periodic NAK, the retransmitted flag (CRYPT is added
    /// when encrypted).
    pub const LIVE: u32 = TSBPDSND | TSBPDRCV | TLPKTDROP | PERIODICNAK | REXMITFLG;
}

/// The handshake type (or a rejection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HsType {
    /// Waveahand (rendezvous).
    WaveAHand,
    /// Induction.
    Induction,
    /// Conclusion.
    Conclusion,
    /// Agreement (rendezvous).
    Agreement,
    /// Done (rendezvous).
    Done,
    /// A rejection, with its reason.
    Rejection(RejectCode),
    /// Another value.
    Other(u32),
}

impl HsType {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => HsType::WaveAHand,
            1 => HsType::Induction,
            0xFFFF_FFFF => HsType::Conclusion,
            0xFFFF_FFFE => HsType::Agreement,
            0xFFFF_FFFD => HsType::Done,
            v if (1000..0xF000_0000).contains(&v) => HsType::Rejection(RejectCode(v - 1000)),
            v => HsType::Other(v),
        }
    }
    fn to_u32(self) -> u32 {
        match self {
            HsType::WaveAHand => 0,
            HsType::Induction => 1,
            HsType::Conclusion => 0xFFFF_FFFF,
            HsType::Agreement => 0xFFFF_FFFE,
            HsType::Done => 0xFFFF_FFFD,
            HsType::Rejection(r) => r.0 + 1000,
            HsType::Other(v) => v,
        }
    }
}

/// Why a connection is refused: libsrt's `SRT_REJ_*` (below 1000) and the
/// predefined `SRT_REJX_*` codes (1000 + an HTTP status); on the wire the
/// handshake type carries 1000 + the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RejectCode(pub u32);

impl RejectCode {
    /// No reason given.
    pub const UNKNOWN: Self = RejectCode(0);
    /// The peer refused.
    pub const PEER: Self = RejectCode(2);
    /// No resources.
    pub const RESOURCE: Self = RejectCode(3);
    /// The handshake could not be read.
    pub const ROGUE: Self = RejectCode(4);
    /// The listener is full.
    pub const BACKLOG: Self = RejectCode(5);
    /// The listener is closing.
    pub const CLOSE: Self = RejectCode(7);
    /// The peer's version is too old.
    pub const VERSION: Self = RejectCode(8);
    /// The passphrases differ.
    pub const BADSECRET: Self = RejectCode(10);
    /// Only one side has a passphrase.
    pub const UNSECURE: Self = RejectCode(11);
    /// Message and stream mode differ.
    pub const MESSAGEAPI: Self = RejectCode(12);
    /// A packet filter is not supported.
    pub const FILTER: Self = RejectCode(14);
    /// Groups are not supported.
    pub const GROUP: Self = RejectCode(15);
    /// A malformed request (`SRT_REJX_BAD_REQUEST`).
    pub const BAD_REQUEST: Self = RejectCode(1400);
    /// Credentials missing or wrong (`SRT_REJX_UNAUTHORIZED`).
    pub const UNAUTHORIZED: Self = RejectCode(1401);
    /// Too many connections (`SRT_REJX_OVERLOAD`).
    pub const OVERLOAD: Self = RejectCode(1402);
    /// Not allowed (`SRT_REJX_FORBIDDEN`).
    pub const FORBIDDEN: Self = RejectCode(1403);
    /// No such stream (`SRT_REJX_NOTFOUND`).
    pub const NOTFOUND: Self = RejectCode(1404);
    /// A mode that is not supported (`SRT_REJX_BAD_MODE`).
    pub const BAD_MODE: Self = RejectCode(1405);
    /// The stream is already published (`SRT_REJX_CONFLICT`).
    pub const CONFLICT: Self = RejectCode(1409);
    /// The server is going down (`SRT_REJX_DOWN`).
    pub const DOWN: Self = RejectCode(1503);

    /// A person's words for it.
    pub fn describe(self) -> &'static str {
        match self.0 {
            0 => "no reason given",
            1 => "system error",
            2 => "refused by the peer",
            3 => "no resources",
            4 => "malformed handshake",
            5 => "listener backlog full",
            6 => "internal error",
            7 => "listener closing",
            8 => "peer version too old",
            9 => "rendezvous cookie collision",
            10 => "wrong passphrase",
            11 => "passphrase required on one side only",
            12 => "message/stream mode mismatch",
            13 => "congestion controller mismatch",
            14 => "packet filter mismatch",
            15 => "group mismatch",
            16 => "connection timeout",
            17 => "crypto mode mismatch",
            1400 => "bad request",
            1401 => "unauthorized",
            1402 => "server overloaded",
            1403 => "forbidden",
            1404 => "stream not found",
            1405 => "mode not supported",
            1406 => "unacceptable",
            1409 => "stream already published",
            1503 => "server shutting down",
            _ => "refused",
        }
    }
}

/// HSREQ / HSRSP: the SRT version, flags and TSBPD delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SrtOptions {
    /// The SRT version (`0x010500` is 1.5.0).
    pub version: u32,
    /// [`srt_flag`] bits.
    pub flags: u32,
    /// The receiver's TSBPD delay, ms.
    pub recv_delay: u16,
    /// The sender's TSBPD delay, ms.
    pub send_delay: u16,
}

/// The answer to a CONCLUSION that asks (HSREQ, maybe KMREQ), as the
/// listener and a rendezvous Responder give it: our HSRSP, where each
/// direction takes the larger of both sides' latencies (`ours_ms` ours),
/// and a KMRSP echoing the request's key material. Returns the HSRSP's
/// options, the extension flags and the extensions.
pub fn answer(req: &Handshake, ours_ms: u16, encrypted: bool) -> (SrtOptions, u16, Vec<Extension>) {
    let theirs = req.options().unwrap_or(SrtOptions {
        version: 0,
        flags: 0,
        recv_delay: 0,
        send_delay: 0,
    });
    let options = SrtOptions {
        version: crate::SRT_VERSION,
        flags: srt_flag::LIVE | if encrypted { srt_flag::CRYPT } else { 0 },
        recv_delay: ours_ms.max(theirs.send_delay),
        send_delay: ours_ms.max(theirs.recv_delay),
    };
    let mut exts = vec![Extension::HsRsp(options)];
    let mut ext = ext_flag::HSREQ;
    if let Some(km) = req.key_material() {
        exts.push(Extension::KmRsp(km.clone()));
        ext |= ext_flag::KMREQ;
    }
    (options, ext, exts)
}

/// A handshake extension.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extension {
    /// 1: HSREQ.
    HsReq(SrtOptions),
    /// 2: HSRSP.
    HsRsp(SrtOptions),
    /// 3: KMREQ (the key material message).
    KmReq(Bytes),
    /// 4: KMRSP (the key material message, or a 4-byte error state).
    KmRsp(Bytes),
    /// 5: the stream id.
    StreamId(String),
    /// 6: the congestion controller's name.
    Congestion(String),
    /// Another extension.
    Other {
        /// Its type.
        kind: u16,
        /// Its content.
        data: Bytes,
    },
}

/// A handshake body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// 4 or 5.
    pub version: u32,
    /// The key length / 8 a caller offers (0, 2, 3, 4), or the cipher family.
    pub encryption: u16,
    /// The extension flags (or, in induction, the magic or the socket type).
    pub extension: u16,
    /// The sender's first sequence number.
    pub initial_seq: Seq,
    /// The maximum packet size (with IP and UDP headers).
    pub mtu: u32,
    /// The flow window, packets.
    pub flow_window: u32,
    /// The type.
    pub hs_type: HsType,
    /// The sender's socket id.
    pub socket_id: u32,
    /// The SYN cookie.
    pub cookie: u32,
    /// The receiver's address as the sender sees it.
    pub peer_ip: [u8; 16],
    /// Extensions (HSv5 conclusion).
    pub extensions: Vec<Extension>,
}

/// The longest stream id (bytes).
pub const MAX_STREAM_ID: usize = 512;

fn be32(d: &[u8], at: usize) -> u32 {
    match d.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// Reads a string that libsrt writes as 32-bit words in host (little
/// endian) order: each group of four bytes is reversed on the wire, and
/// the end is padded with NULs. Not UTF-8 is an error: such a name could
/// not be written back as it came (nor name a stream).
fn read_swapped(d: &[u8]) -> Result<String, PacketError> {
    let mut s = Vec::with_capacity(d.len());
    for w in d.chunks(4) {
        s.extend(w.iter().rev());
    }
    while s.last() == Some(&0) {
        s.pop();
    }
    String::from_utf8(s).map_err(|_| PacketError::Bad("a handshake string is not UTF-8"))
}

fn write_swapped(out: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    for w in b.chunks(4) {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        word.reverse();
        out.put_slice(&word);
    }
}

fn parse_options(d: &[u8]) -> Result<SrtOptions, PacketError> {
    if d.len() < 12 {
        return Err(PacketError::Short {
            what: "HSREQ",
            len: d.len(),
        });
    }
    let delays = be32(d, 8);
    Ok(SrtOptions {
        version: be32(d, 0),
        flags: be32(d, 4),
        recv_delay: (delays >> 16) as u16,
        send_delay: (delays & 0xFFFF) as u16,
    })
}

impl Handshake {
    /// Parses a handshake body.
    pub fn parse(d: &[u8]) -> Result<Handshake, PacketError> {
        if d.len() < BODY_LEN {
            return Err(PacketError::Short {
                what: "handshake",
                len: d.len(),
            });
        }
        let mut peer_ip = [0u8; 16];
        peer_ip.copy_from_slice(&d[32..48]);
        let mut h = Handshake {
            version: be32(d, 0),
            encryption: (be32(d, 4) >> 16) as u16,
            extension: (be32(d, 4) & 0xFFFF) as u16,
            initial_seq: Seq::new(be32(d, 8)),
            mtu: be32(d, 12),
            flow_window: be32(d, 16),
            hs_type: HsType::from_u32(be32(d, 20)),
            socket_id: be32(d, 24),
            cookie: be32(d, 28),
            peer_ip,
            extensions: Vec::new(),
        };
        if h.version < 5 {
            // HSv4 carries no extensions (whatever follows is ignored).
            return Ok(h);
        }
        let mut rest = &d[BODY_LEN..];
        while rest.len() >= 4 {
            let kind = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])) * 4;
            let Some(body) = rest.get(4..4 + len) else {
                return Err(PacketError::Bad(
                    "handshake extension longer than the packet",
                ));
            };
            let ext = match kind {
                1 => Extension::HsReq(parse_options(body)?),
                2 => Extension::HsRsp(parse_options(body)?),
                3 => Extension::KmReq(Bytes::copy_from_slice(body)),
                4 => Extension::KmRsp(Bytes::copy_from_slice(body)),
                5 => {
                    if body.len() > MAX_STREAM_ID {
                        return Err(PacketError::Bad("stream id longer than 512 bytes"));
                    }
                    Extension::StreamId(read_swapped(body)?)
                }
                6 => Extension::Congestion(read_swapped(body)?),
                _ => Extension::Other {
                    kind,
                    data: Bytes::copy_from_slice(body),
                },
            };
            if h.extensions.len() >= 16 {
                return Err(PacketError::Bad("more than 16 handshake extensions"));
            }
            h.extensions.push(ext);
            rest = &rest[4 + len..];
        }
        Ok(h)
    }

    /// Writes the body and its extensions.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_u32(self.version);
        out.put_u16(self.encryption);
        out.put_u16(self.extension);
        out.put_u32(self.initial_seq.get());
        out.put_u32(self.mtu);
        out.put_u32(self.flow_window);
        out.put_u32(self.hs_type.to_u32());
        out.put_u32(self.socket_id);
        out.put_u32(self.cookie);
        out.put_slice(&self.peer_ip);
        for e in &self.extensions {
            let (kind, at) = (
                match e {
                    Extension::HsReq(_) => 1,
                    Extension::HsRsp(_) => 2,
                    Extension::KmReq(_) => 3,
                    Extension::KmRsp(_) => 4,
                    Extension::StreamId(_) => 5,
                    Extension::Congestion(_) => 6,
                    Extension::Other { kind, .. } => *kind,
                },
                out.len(),
            );
            out.put_u16(kind);
            out.put_u16(0);
            match e {
                Extension::HsReq(o) | Extension::HsRsp(o) => {
                    out.put_u32(o.version);
                    out.put_u32(o.flags);
                    out.put_u32((u32::from(o.recv_delay) << 16) | u32::from(o.send_delay));
                }
                Extension::KmReq(b) | Extension::KmRsp(b) | Extension::Other { data: b, .. } => {
                    out.put_slice(b);
                    while (out.len() - at) % 4 != 0 {
                        out.put_u8(0);
                    }
                }
                Extension::StreamId(s) | Extension::Congestion(s) => write_swapped(out, s),
            }
            let words = ((out.len() - at - 4) / 4) as u16;
            out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
        }
    }

    /// The HSREQ or HSRSP extension.
    pub fn options(&self) -> Option<SrtOptions> {
        self.extensions.iter().find_map(|e| match e {
            Extension::HsReq(o) | Extension::HsRsp(o) => Some(*o),
            _ => None,
        })
    }

    /// The stream id extension.
    pub fn stream_id(&self) -> Option<&str> {
        self.extensions.iter().find_map(|e| match e {
            Extension::StreamId(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The KMREQ or KMRSP extension.
    pub fn key_material(&self) -> Option<&Bytes> {
        self.extensions.iter().find_map(|e| match e {
            Extension::KmReq(b) | Extension::KmRsp(b) => Some(b),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conclusion_round_trips_with_extensions() {
        let h = Handshake {
            version: 5,
            encryption: 2,
            extension: ext_flag::HSREQ | ext_flag::CONFIG,
            initial_seq: Seq::new(0x1234_5678),
            mtu: 1500,
            flow_window: 8192,
            hs_type: HsType::Conclusion,
            socket_id: 0xDEAD,
            cookie: 0xBEEF,
            peer_ip: [1; 16],
            extensions: vec![
                Extension::HsReq(SrtOptions {
                    version: 0x010500,
                    flags: 0xBF,
                    recv_delay: 120,
                    send_delay: 0,
                }),
                Extension::StreamId("#!::r=live/cam,m=publish".into()),
            ],
        };
        let mut b = BytesMut::new();
        h.write(&mut b);
        // The stream id's words are byte-swapped on the wire.
        assert_eq!(&b[BODY_LEN + 16 + 4..BODY_LEN + 16 + 8], b"::!#");
        let back = Handshake::parse(&b).ok();
        assert_eq!(back.as_ref(), Some(&h));
        assert_eq!(
            back.and_then(|h| h.stream_id().map(String::from))
                .as_deref(),
            Some("#!::r=live/cam,m=publish")
        );
    }

    #[test]
    fn rejection_codes_map_to_the_wire() {
        assert_eq!(HsType::Rejection(RejectCode::UNAUTHORIZED).to_u32(), 2401);
        assert_eq!(
            HsType::from_u32(1010),
            HsType::Rejection(RejectCode::BADSECRET)
        );
    }

    #[test]
    fn truncated_extension_is_an_error() {
        let h = Handshake {
            version: 5,
            encryption: 0,
            extension: 0,
            initial_seq: Seq::new(1),
            mtu: 1500,
            flow_window: 8192,
            hs_type: HsType::Conclusion,
            socket_id: 1,
            cookie: 2,
            peer_ip: [0; 16],
            extensions: vec![Extension::StreamId("abcdefgh".into())],
        };
        let mut b = BytesMut::new();
        h.write(&mut b);
        assert!(Handshake::parse(&b[..b.len() - 1]).is_err());
    }
}
