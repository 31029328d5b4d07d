//! The RTMP handshake: C0/C1/C2 and S0/S1/S2 (RTMP specification 1.0,
//! section 5.2), both the plain form and the Flash-era digest form in which
//! C1 and S1 carry an HMAC-SHA256 digest at an offset chosen by schema 0 or
//! schema 1, keyed with the well-known "Genuine Adobe Flash Player 001" and
//! "Genuine Adobe Flash Media Server 001" keys, and C2/S2 prove the peer's
//! digest was seen.
//!
//! The server answers whichever form the client used. The client offers
//! either form (a configuration choice) and accepts either answer. Random
//! bytes come from a seed the host passes in; nothing here reads a clock or
//! a random source.

use crate::error::{Result, RtmpError};
use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The size of C1, C2, S1 and S2.
pub const PACKET_SIZE: usize = 1536;
/// The RTMP version byte of C0/S0.
pub const RTMP_VERSION: u8 = 3;
const DIGEST_LEN: usize = 32;

/// The Flash Player key: its first 30 bytes sign C1, all 62 derive the C2 key.
const FP_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
/// The Flash Media Server key: its first 36 bytes sign S1, all 68 derive
/// the S2 key.
const FMS_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const FP_KEY_SIGN: usize = 30;
const FMS_KEY_SIGN: usize = 36;
/// The version field S1 carries in the digest handshake.
const SERVER_VERSION: [u8; 4] = [0x04, 0x05, 0x00, 0x01];
/// The version field C1 carries in the digest handshake (Flash Player 10).
const CLIENT_VERSION: [u8; 4] = [0x0A, 0x00, 0x2D, 0x02];

/// Where the digest sits in C1/S1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestSchema {
    /// Key block first, digest block second: the digest offset is read from
    /// bytes 772..776.
    Schema0,
    /// Digest block first: the digest offset is read from bytes 8..12.
    Schema1,
}

impl DigestSchema {
    fn offset(self, packet: &[u8]) -> usize {
        let base = match self {
            DigestSchema::Schema0 => 772,
            DigestSchema::Schema1 => 8,
        };
        let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        base + 4 + sum % 728
    }
}

/// Which handshake the peer used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeKind {
    /// The plain handshake: S2 echoes C1, C2 echoes S1.
    Plain,
    /// The digest handshake with the given schema.
    Digest(DigestSchema),
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The digest of `packet` with its digest bytes at `at` left out.
fn packet_digest(packet: &[u8], at: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac(key, &[&packet[..at], &packet[at + DIGEST_LEN..]])
}

/// Finds a valid digest in C1 (client key) or S1 (server key).
fn find_digest(packet: &[u8], key: &[u8]) -> Option<(DigestSchema, [u8; DIGEST_LEN])> {
    for schema in [DigestSchema::Schema1, DigestSchema::Schema0] {
        let at = schema.offset(packet);
        let want = packet_digest(packet, at, key);
        if packet[at..at + DIGEST_LEN] == want {
            return Some((schema, want));
        }
    }
    None
}

/// Writes a digest into `packet` per `schema`; returns it.
fn sign(packet: &mut [u8], schema: DigestSchema, key: &[u8]) -> [u8; DIGEST_LEN] {
    let at = schema.offset(packet);
    let d = packet_digest(packet, at, key);
    packet[at..at + DIGEST_LEN].copy_from_slice(&d);
    d
}

/// A small deterministic generator (SplitMix64) for the handshake's random
/// bytes. The seed is an input; the quality needed is "not constant".
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Prng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Client: C0+C1 not yet produced.
    ClientStart,
    /// Server: waiting for C0+C1.
    AwaitC0C1,
    /// Server: waiting for C2.
    AwaitC2,
    /// Client: waiting for S0+S1+S2.
    AwaitS0S1S2,
    Done,
}

/// One side of the handshake.
#[derive(Clone, Debug)]
pub struct Handshake {
    state: State,
    prng: Prng,
    offer_digest: bool,
    kind: Option<HandshakeKind>,
    /// Client: our C1, kept for checking S2 (not enforced, as real servers
    /// answer loosely).
    sent_digest: Option<[u8; DIGEST_LEN]>,
}

impl Handshake {
    /// The server side; answers the client's form.
    pub fn server(seed: u64) -> Self {
        Handshake {
            state: State::AwaitC0C1,
            prng: Prng::new(seed),
            offer_digest: false,
            kind: None,
            sent_digest: None,
        }
    }

    /// The client side; `digest` offers the digest form in C1.
    pub fn client(seed: u64, digest: bool) -> Self {
        Handshake {
            state: State::ClientStart,
            prng: Prng::new(seed),
            offer_digest: digest,
            kind: None,
            sent_digest: None,
        }
    }

    /// Whether the handshake is over.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Which form the peer used, once known.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Client: writes C0+C1 to `out` (once).
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.state != State::ClientStart {
            return;
        }
        let mut c1 = [0u8; PACKET_SIZE];
        self.prng.fill(&mut c1[8..]);
        c1[..4].copy_from_slice(&[0; 4]);
        if self.offer_digest {
            c1[4..8].copy_from_slice(&CLIENT_VERSION);
            self.sent_digest = Some(sign(&mut c1, DigestSchema::Schema1, &FP_KEY[..FP_KEY_SIGN]));
        } else {
            c1[4..8].copy_from_slice(&[0; 4]);
        }
        out.put_u8(RTMP_VERSION);
        out.put_slice(&c1);
        self.state = State::AwaitS0S1S2;
    }

    /// Consumes handshake bytes from the front of `input` and writes the
    /// replies to `out`. Returns whether the handshake is complete; bytes
    /// after the handshake stay in `input`. Too few bytes is not an error.
    pub fn read(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool> {
        loop {
            match self.state {
                State::ClientStart => {
                    self.start(out);
                }
                State::AwaitC0C1 => {
                    if let Some(&v) = input.first() {
                        check_version(v)?;
                    }
                    if input.len() < 1 + PACKET_SIZE {
                        return Ok(false);
                    }
                    input.advance(1);
                    let c1 = input.split_to(PACKET_SIZE);
                    self.answer_c1(&c1, out);
                    self.state = State::AwaitC2;
                }
                State::AwaitC2 => {
                    if input.len() < PACKET_SIZE {
                        return Ok(false);
                    }
                    input.advance(PACKET_SIZE);
                    self.state = State::Done;
                }
                State::AwaitS0S1S2 => {
                    if let Some(&v) = input.first() {
                        check_version(v)?;
                    }
                    if input.len() < 1 + 2 * PACKET_SIZE {
                        return Ok(false);
                    }
                    input.advance(1);
                    let s1 = input.split_to(PACKET_SIZE);
                    input.advance(PACKET_SIZE);
                    self.answer_s1(&s1, out);
                    self.state = State::Done;
                }
                State::Done => return Ok(true),
            }
        }
    }

    fn answer_c1(&mut self, c1: &[u8], out: &mut BytesMut) {
        let digest = if c1[4..8] != [0; 4] {
            find_digest(c1, &FP_KEY[..FP_KEY_SIGN])
        } else {
            None
        };
        out.reserve(1 + 2 * PACKET_SIZE);
        out.put_u8(RTMP_VERSION);
        match digest {
            Some((schema, c1_digest)) => {
                self.kind = Some(HandshakeKind::Digest(schema));
                let mut s1 = [0u8; PACKET_SIZE];
                self.prng.fill(&mut s1[8..]);
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                sign(&mut s1, schema, &FMS_KEY[..FMS_KEY_SIGN]);
                out.put_slice(&s1);
                let mut s2 = [0u8; PACKET_SIZE];
                self.prng.fill(&mut s2);
                let key = hmac(&FMS_KEY, &[&c1_digest]);
                let d = hmac(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]);
                s2[PACKET_SIZE - DIGEST_LEN..].copy_from_slice(&d);
                out.put_slice(&s2);
            }
            None => {
                self.kind = Some(HandshakeKind::Plain);
                let mut s1 = [0u8; PACKET_SIZE];
                self.prng.fill(&mut s1[8..]);
                out.put_slice(&s1);
                // S2 echoes C1 (time, time2, random).
                out.put_slice(c1);
            }
        }
    }

    fn answer_s1(&mut self, s1: &[u8], out: &mut BytesMut) {
        let digest = if self.offer_digest && s1[4..8] != [0; 4] {
            find_digest(s1, &FMS_KEY[..FMS_KEY_SIGN])
        } else {
            None
        };
        match digest {
            Some((schema, s1_digest)) => {
                self.kind = Some(HandshakeKind::Digest(schema));
                let mut c2 = [0u8; PACKET_SIZE];
                self.prng.fill(&mut c2);
                let key = hmac(&FP_KEY, &[&s1_digest]);
                let d = hmac(&key, &[&c2[..PACKET_SIZE - DIGEST_LEN]]);
                c2[PACKET_SIZE - DIGEST_LEN..].copy_from_slice(&d);
                out.put_slice(&c2);
            }
            None => {
                self.kind = Some(HandshakeKind::Plain);
                out.put_slice(s1);
            }
        }
    }
}

fn check_version(v: u8) -> Result<()> {
    if v == RTMP_VERSION {
        Ok(())
    } else {
        Err(RtmpError::UnsupportedVersion(v))
    }
}

/// Whether `s2` proves that the server saw the client digest `c1_digest`
/// (the digest handshake's check, for tests and strict clients).
pub fn verify_s2(s2: &[u8], c1_digest: &[u8; DIGEST_LEN]) -> bool {
    if s2.len() != PACKET_SIZE {
        return false;
    }
    let key = hmac(&FMS_KEY, &[c1_digest]);
    hmac(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]])[..] == s2[PACKET_SIZE - DIGEST_LEN..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client_digest: bool) -> (Handshake, Handshake) {
        let mut c = Handshake::client(1, client_digest);
        let mut s = Handshake::server(2);
        let mut c_out = BytesMut::new();
        c.start(&mut c_out);
        let mut s_out = BytesMut::new();
        // Feed the server one byte at a time.
        let mut s_in = BytesMut::new();
        for b in c_out.split().iter() {
            s_in.put_u8(*b);
            s.read(&mut s_in, &mut s_out).unwrap();
        }
        let mut c_in = s_out.split();
        // S2 check for the digest form.
        if client_digest {
            let s2 = &c_in[1 + PACKET_SIZE..];
            assert!(verify_s2(s2, &c.sent_digest.unwrap()));
        }
        assert!(c.read(&mut c_in, &mut c_out).unwrap());
        let mut s_in = c_out.split();
        assert!(s.read(&mut s_in, &mut s_out).unwrap());
        assert!(s_in.is_empty());
        (c, s)
    }

    #[test]
    fn plain_handshake() {
        let (c, s) = run(false);
        assert_eq!(s.kind(), Some(HandshakeKind::Plain));
        assert_eq!(c.kind(), Some(HandshakeKind::Plain));
    }

    #[test]
    fn digest_handshake() {
        let (c, s) = run(true);
        assert_eq!(s.kind(), Some(HandshakeKind::Digest(DigestSchema::Schema1)));
        assert_eq!(c.kind(), Some(HandshakeKind::Digest(DigestSchema::Schema1)));
    }

    #[test]
    fn schema0_c1_is_recognised() {
        let mut c1 = [7u8; PACKET_SIZE];
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        sign(&mut c1, DigestSchema::Schema0, &FP_KEY[..FP_KEY_SIGN]);
        let (schema, _) = find_digest(&c1, &FP_KEY[..FP_KEY_SIGN]).unwrap();
        assert_eq!(schema, DigestSchema::Schema0);
    }

    #[test]
    fn server_answers_schema0_in_kind() {
        let mut c1 = [9u8; PACKET_SIZE];
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        let c1_digest = sign(&mut c1, DigestSchema::Schema0, &FP_KEY[..FP_KEY_SIGN]);
        let mut s = Handshake::server(5);
        let mut input = BytesMut::new();
        input.put_u8(RTMP_VERSION);
        input.put_slice(&c1);
        let mut out = BytesMut::new();
        assert!(!s.read(&mut input, &mut out).unwrap());
        assert_eq!(s.kind(), Some(HandshakeKind::Digest(DigestSchema::Schema0)));
        let s1 = &out[1..1 + PACKET_SIZE];
        let (schema, _) = find_digest(s1, &FMS_KEY[..FMS_KEY_SIGN]).unwrap();
        assert_eq!(schema, DigestSchema::Schema0);
        assert!(verify_s2(&out[1 + PACKET_SIZE..], &c1_digest));
    }

    #[test]
    fn wrong_version_is_an_error() {
        let mut s = Handshake::server(0);
        let mut i = BytesMut::from(&[6u8][..]);
        let mut o = BytesMut::new();
        assert_eq!(
            s.read(&mut i, &mut o),
            Err(RtmpError::UnsupportedVersion(6))
        );
    }
}
