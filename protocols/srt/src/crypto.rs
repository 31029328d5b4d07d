//! SRT payload encryption: the Key Material message that KMREQ/KMRSP carry
//! (draft-sharabayko-srt §3.2.1.2 "Key Material Extension Message", §3.2.2
//! "Key Material"), the Key Encrypting Key derived from a passphrase, the
//! Stream Encrypting Keys wrapped under it (RFC 3394), and AES-CTR over data
//! packet payloads (§6 "Encryption").
//!
//! Sans-IO: no clock and no random source; [`Crypto::generate`] and
//! [`Crypto::refresh`] take the bytes they need from a caller's function.
//!
//! # Wire facts, checked against libsrt 1.5.1 (`testdata/crypto/`)
//!
//! - **Byte order.** libsrt keeps a handshake's extension words in host order
//!   and swaps every 32-bit word when it sends or receives the packet. The Key
//!   Material message is built in network order, so libsrt pre-swaps it and
//!   the two swaps cancel: inside KMREQ/KMRSP (and in a KM refresh control
//!   packet) the message is on the wire exactly as §3.2.2 draws it, byte for
//!   byte, starting `12 20 29 0k` (the extension's own type and length
//!   words are big-endian, as everywhere). What the swap does reach:
//!   * the stream id (extension 5) is a string whose 4-byte groups come out
//!     reversed (`abcdefg` travels as `d c b a \0 g f e`);
//!   * the one-word KMRSP that reports a failure ([`KmState`]) is a host
//!     integer put through the same pre-swap, so it travels **little-endian**
//!     (`NoSecret` is `03 00 00 00`), unlike every other integer in SRT.
//! - **KMRSP echoes KMREQ.** A responder that could unwrap the keys answers
//!   with the very bytes it received.
//! - **KEK** = PBKDF2-HMAC-SHA1(passphrase, the *last* 8 bytes of the 16-byte
//!   salt, 2048 iterations, as many bytes as the SEK) (§6.1.4, §6.2.1; libsrt
//!   `hcryptCtx_GenSecret`). Passphrases are 10 to 80 bytes: libsrt refuses 9
//!   and 81 and takes 80 (`SRTO_PASSPHRASE`, range `[10..80]`).
//! - **Wrap** = RFC 3394 AES key wrap under the KEK of the SEK, or of the even
//!   SEK followed by the odd one when KK = `11`: 8 + n·KLen bytes.
//! - **AES-CTR counter block** (§6.1.2; libsrt `hcrypt_SetCtrIV`): bytes 0..14
//!   are the salt's first 14 bytes, bytes 10..14 XORed with the packet's
//!   sequence number (big-endian), bytes 14..16 the block counter from 0. The
//!   formula of §6.2.2, `(MSB(112, Salt) << 2) XOR PktSeqNo`, does not describe
//!   what libsrt sends; this layout does, as the captures show. Payloads are
//!   far below 2^16 blocks, so a 128-bit big-endian counter gives the same
//!   stream.
//! - **Refresh** keeps the salt and the key length, so the KEK is derived once
//!   per connection: libsrt (`hcryptCtx_Tx_Refresh`) makes only a new SEK.
//! - **Ciphers.** KMs carry 2 (AES-CTR). 4 (AES-GCM, Auth 1) exists since
//!   libsrt 1.5.2; the libsrt 1.5.1 (GnuTLS) installed here has no GCM and
//!   ignores `cryptomode=2`. This module parses cipher 4 and refuses to use it
//!   ([`KmError::UnsupportedCipher`]).

use core::fmt;

use aes::{Aes128, Aes192, Aes256};
use bytes::{BufMut, Bytes, BytesMut};
use ctr::cipher::{
    consts::U16, BlockCipher, BlockEncryptMut, InnerIvInit, KeyInit, StreamCipher,
    StreamCipherCoreWrapper,
};
use ctr::CtrCore;
use sha1::Sha1;

/// The Key Material message's version (`V`).
const KM_VERSION: u8 = 1;
/// The Key Material packet type (`PT`).
const KM_PACKET_TYPE: u8 = 2;
/// `Sign`: "HAI" as a PnP vendor id.
const KM_SIGNATURE: u16 = 0x2029;
/// Stream encapsulation `SE`: MPEG-TS/SRT.
const SE_SRT: u8 = 2;
/// The Key Material header before the salt.
const KM_HEADER_LEN: usize = 16;
/// The only salt length defined (§3.2.2: 128 bits).
pub const SALT_LEN: usize = 16;
/// The integrity check value RFC 3394 prepends to wrapped keys.
const ICV_LEN: usize = 8;
/// PBKDF2 rounds (§6.2.1 `Iter`).
const PBKDF2_ITERATIONS: u32 = 2048;
/// The salt's bytes that feed PBKDF2: its last 8 (`LSB(64, Salt)`).
const PBKDF2_SALT_LEN: usize = 8;
/// The shortest passphrase libsrt accepts.
pub const PASSPHRASE_MIN: usize = 10;
/// The longest passphrase libsrt accepts.
pub const PASSPHRASE_MAX: usize = 80;
/// The longest Key Material message: two 256-bit keys.
pub const KM_MAX_LEN: usize = KM_HEADER_LEN + SALT_LEN + ICV_LEN + 2 * 32;

/// What went wrong with key material, a passphrase or a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmError {
    /// Fewer bytes than the 16-byte Key Material header.
    #[error("key material of {len} bytes is shorter than its 16-byte header")]
    TooShort {
        /// The bytes there were.
        len: usize,
    },
    /// The length does not match the salt, key length and key count announced.
    #[error("key material is {actual} bytes but its header announces {expected}")]
    Length {
        /// What the header announces.
        expected: usize,
        /// What there is.
        actual: usize,
    },
    /// `V` is not 1 (or the reserved `S` bit is set).
    #[error("key material version {0} (only 1 is defined)")]
    Version(u8),
    /// `PT` is not 2 (Keying Material).
    #[error("packet type {0} is not key material (2)")]
    PacketType(u8),
    /// `Sign` is not 0x2029.
    #[error("key material signature {0:#06x} is not 0x2029")]
    Signature(u16),
    /// `KK` is 00: no key.
    #[error("key material carries no key (KK = 00)")]
    NoKeys,
    /// A cipher value that is not 0 (none), 2 (AES-CTR) or 4 (AES-GCM).
    #[error("unknown cipher {0} in key material")]
    UnknownCipher(u8),
    /// `Auth` does not go with `Cipher` (GCM needs 1, the others 0).
    #[error("authentication {auth} does not go with cipher {cipher:?}")]
    Auth {
        /// The cipher announced.
        cipher: Cipher,
        /// The `Auth` value.
        auth: u8,
    },
    /// `SE` is not 2 (MPEG-TS/SRT).
    #[error("stream encapsulation {0} is not SRT (2)")]
    StreamEncapsulation(u8),
    /// The salt is not 16 bytes.
    #[error("salt of {0} bytes (SRT uses 16)")]
    SaltLength(usize),
    /// The key is not 16, 24 or 32 bytes.
    #[error("key length of {0} bytes (AES takes 16, 24 or 32)")]
    KeyLength(usize),
    /// A KM state word in a KMRSP that no version defines.
    #[error("unknown key material state {0} in KMRSP")]
    UnknownState(u32),
    /// A known cipher this module does not implement.
    #[error("cipher {0:?} is not supported (AES-CTR only)")]
    UnsupportedCipher(Cipher),
    /// The passphrase is not 10 to 80 bytes.
    #[error("passphrase of {0} bytes (SRT takes 10 to 80)")]
    PassphraseLength(usize),
    /// The wrapped keys failed RFC 3394's integrity check: the peer's
    /// passphrase is not ours (KM state `BadSecret`).
    #[error("the keys do not unwrap: wrong passphrase")]
    WrongPassphrase,
    /// A refresh changed the key length of the connection.
    #[error("key material changes the key length from {from} to {to} bytes")]
    KeyLengthChanged {
        /// The connection's key length.
        from: usize,
        /// The refresh's key length.
        to: usize,
    },
    /// A packet names a key that is not installed.
    #[error("no {0:?} key installed")]
    MissingKey(KeyIndex),
    /// The AES key wrap refused its buffers (sizes are fixed here: a bug).
    #[error("AES key wrap refused its buffer sizes")]
    KeyWrap,
}

/// The AES key length (KLen; the handshake's Encryption Field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyLen {
    /// AES-128: 16 bytes.
    Aes128,
    /// AES-192: 24 bytes.
    Aes192,
    /// AES-256: 32 bytes.
    Aes256,
}

impl KeyLen {
    /// The key's length in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            KeyLen::Aes128 => 16,
            KeyLen::Aes192 => 24,
            KeyLen::Aes256 => 32,
        }
    }

    /// The key length of `n` bytes, if AES has one.
    pub const fn from_bytes(n: usize) -> Option<KeyLen> {
        match n {
            16 => Some(KeyLen::Aes128),
            24 => Some(KeyLen::Aes192),
            32 => Some(KeyLen::Aes256),
            _ => None,
        }
    }

    /// The key length a handshake's Encryption Field names (2, 3, 4); 0
    /// (nothing announced) and other values give `None`.
    pub const fn from_handshake(field: u16) -> Option<KeyLen> {
        match field {
            2 => Some(KeyLen::Aes128),
            3 => Some(KeyLen::Aes192),
            4 => Some(KeyLen::Aes256),
            _ => None,
        }
    }

    /// The handshake Encryption Field for this length (2, 3, 4).
    pub const fn handshake_field(self) -> u16 {
        (self.bytes() / 8) as u16
    }
}

/// The `Cipher` field of a Key Material message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// 0: none, or a KEKI-indexed context.
    None,
    /// 2: AES-CTR, what libsrt uses.
    Ctr,
    /// 4: AES-GCM (libsrt 1.5.2 on); parsed, not supported.
    Gcm,
}

impl Cipher {
    /// The field's value.
    pub const fn code(self) -> u8 {
        match self {
            Cipher::None => 0,
            Cipher::Ctr => 2,
            Cipher::Gcm => 4,
        }
    }

    /// The cipher a field value names (1 and 3, ECB and CBC, are reserved).
    pub const fn from_code(code: u8) -> Option<Cipher> {
        match code {
            0 => Some(Cipher::None),
            2 => Some(Cipher::Ctr),
            4 => Some(Cipher::Gcm),
            _ => None,
        }
    }

    /// The `Auth` value that goes with it: 1 (AES-GCM) for GCM, else 0.
    pub const fn auth(self) -> u8 {
        match self {
            Cipher::Gcm => 1,
            _ => 0,
        }
    }
}

/// One of the two key slots, as a data packet's `KK` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyIndex {
    /// The even key, `KK` = 01.
    Even,
    /// The odd key, `KK` = 10.
    Odd,
}

impl KeyIndex {
    /// The `KK` bits of a data packet encrypted with this key.
    pub const fn kk(self) -> u8 {
        match self {
            KeyIndex::Even => 0b01,
            KeyIndex::Odd => 0b10,
        }
    }

    /// The key a data packet's `KK` names; 00 (clear) and 11 give `None`.
    pub const fn from_kk(kk: u8) -> Option<KeyIndex> {
        match kk {
            0b01 => Some(KeyIndex::Even),
            0b10 => Some(KeyIndex::Odd),
            _ => None,
        }
    }

    /// The other slot.
    pub const fn other(self) -> KeyIndex {
        match self {
            KeyIndex::Even => KeyIndex::Odd,
            KeyIndex::Odd => KeyIndex::Even,
        }
    }
}

/// Which keys a Key Material message carries (its `KK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySet {
    /// 01: the even key.
    Even,
    /// 10: the odd key.
    Odd,
    /// 11: both, even first (announcing a refresh).
    Both,
}

impl KeySet {
    /// The `KK` bits.
    pub const fn kk(self) -> u8 {
        match self {
            KeySet::Even => 0b01,
            KeySet::Odd => 0b10,
            KeySet::Both => 0b11,
        }
    }

    /// The set `KK` names; 00 gives `None`.
    pub const fn from_kk(kk: u8) -> Option<KeySet> {
        match kk & 0b11 {
            0b01 => Some(KeySet::Even),
            0b10 => Some(KeySet::Odd),
            0b11 => Some(KeySet::Both),
            _ => None,
        }
    }

    /// How many keys are wrapped.
    pub const fn count(self) -> usize {
        match self {
            KeySet::Both => 2,
            _ => 1,
        }
    }
}

/// A peer's key material state, as a one-word KMRSP reports a failure
/// (§3.2.1.2; libsrt `SRT_KM_STATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmState {
    /// 0: the peer has no passphrase.
    Unsecured,
    /// 1: exchanging key material.
    Securing,
    /// 2: keys exchanged.
    Secured,
    /// 3: the peer has no passphrase to unwrap ours.
    NoSecret,
    /// 4: the peer's passphrase does not unwrap ours.
    BadSecret,
    /// 5: the peer wants another cipher mode (libsrt 1.5.2 on).
    BadCryptoMode,
}

impl KmState {
    /// The state's number.
    pub const fn code(self) -> u32 {
        match self {
            KmState::Unsecured => 0,
            KmState::Securing => 1,
            KmState::Secured => 2,
            KmState::NoSecret => 3,
            KmState::BadSecret => 4,
            KmState::BadCryptoMode => 5,
        }
    }

    /// The state a number names.
    pub const fn from_code(code: u32) -> Option<KmState> {
        match code {
            0 => Some(KmState::Unsecured),
            1 => Some(KmState::Securing),
            2 => Some(KmState::Secured),
            3 => Some(KmState::NoSecret),
            4 => Some(KmState::BadSecret),
            5 => Some(KmState::BadCryptoMode),
            _ => None,
        }
    }

    /// The four bytes of a failure KMRSP: the number **little-endian**, as
    /// libsrt sends it (see the module's wire facts).
    pub const fn to_wire(self) -> [u8; 4] {
        self.code().to_le_bytes()
    }
}

/// What a KMRSP extension (or KM refresh response) holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KmResponse {
    /// The key material echoed: the responder has the keys.
    Accepted(KeyMaterial),
    /// One word: the responder's failure state.
    Failed(KmState),
}

impl KmResponse {
    /// Reads a KMRSP's content: 4 bytes are a state, anything else a Key
    /// Material message.
    pub fn parse(d: &[u8]) -> Result<KmResponse, KmError> {
        match <[u8; 4]>::try_from(d) {
            Ok(word) => {
                let code = u32::from_le_bytes(word);
                KmState::from_code(code)
                    .map(KmResponse::Failed)
                    .ok_or(KmError::UnknownState(code))
            }
            Err(_) => KeyMaterial::parse(d).map(KmResponse::Accepted),
        }
    }
}

/// A Key Material message (§3.2.2): the salt and the wrapped SEK(s).
///
/// ```text
///  byte 0: 0|V=1|PT=2   1..3: Sign 0x2029   3: resv(6) KK(2)
///  4..8: KEKI           8: Cipher  9: Auth  10: SE=2  11: resv
///  12..14: resv         14: SLen/4 15: KLen/4
///  16..32: Salt         32..: Wrap (8-byte ICV + n * KLen)
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    keys: KeySet,
    keki: u32,
    cipher: Cipher,
    key_len: KeyLen,
    salt: [u8; SALT_LEN],
    wrapped: [u8; ICV_LEN + 64],
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("keys", &self.keys)
            .field("keki", &self.keki)
            .field("cipher", &self.cipher)
            .field("key_len", &self.key_len)
            .field("salt", &self.salt)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Parses a Key Material message: a KMREQ's content, an accepting
    /// KMRSP's, or a KM refresh packet's payload. The length must be exact.
    pub fn parse(d: &[u8]) -> Result<KeyMaterial, KmError> {
        if d.len() < KM_HEADER_LEN {
            return Err(KmError::TooShort { len: d.len() });
        }
        let version = d[0] >> 4;
        if version != KM_VERSION {
            return Err(KmError::Version(version));
        }
        let packet_type = d[0] & 0x0F;
        if packet_type != KM_PACKET_TYPE {
            return Err(KmError::PacketType(packet_type));
        }
        let sign = u16::from_be_bytes([d[1], d[2]]);
        if sign != KM_SIGNATURE {
            return Err(KmError::Signature(sign));
        }
        let keys = KeySet::from_kk(d[3]).ok_or(KmError::NoKeys)?;
        let keki = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        let cipher = Cipher::from_code(d[8]).ok_or(KmError::UnknownCipher(d[8]))?;
        if d[9] != cipher.auth() {
            return Err(KmError::Auth { cipher, auth: d[9] });
        }
        if d[10] != SE_SRT {
            return Err(KmError::StreamEncapsulation(d[10]));
        }
        let salt_len = usize::from(d[14]) * 4;
        if salt_len != SALT_LEN {
            return Err(KmError::SaltLength(salt_len));
        }
        let key_bytes = usize::from(d[15]) * 4;
        let key_len = KeyLen::from_bytes(key_bytes).ok_or(KmError::KeyLength(key_bytes))?;
        let wrap_len = ICV_LEN + keys.count() * key_bytes;
        let expected = KM_HEADER_LEN + SALT_LEN + wrap_len;
        if d.len() != expected {
            return Err(KmError::Length {
                expected,
                actual: d.len(),
            });
        }
        let mut salt = [0; SALT_LEN];
        salt.copy_from_slice(&d[KM_HEADER_LEN..KM_HEADER_LEN + SALT_LEN]);
        let mut wrapped = [0; ICV_LEN + 64];
        wrapped[..wrap_len].copy_from_slice(&d[KM_HEADER_LEN + SALT_LEN..]);
        Ok(KeyMaterial {
            keys,
            keki,
            cipher,
            key_len,
            salt,
            wrapped,
        })
    }

    /// The message's length in bytes (a multiple of 4).
    pub fn encoded_len(&self) -> usize {
        KM_HEADER_LEN + SALT_LEN + self.wrapped().len()
    }

    /// Appends the message to `out`, as §3.2.2 lays it out (no word swap:
    /// see the module's wire facts).
    pub fn write(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u8(KM_VERSION << 4 | KM_PACKET_TYPE);
        out.put_u16(KM_SIGNATURE);
        out.put_u8(self.keys.kk());
        out.put_u32(self.keki);
        out.put_u8(self.cipher.code());
        out.put_u8(self.cipher.auth());
        out.put_u8(SE_SRT);
        out.put_u8(0);
        out.put_u16(0);
        out.put_u8((SALT_LEN / 4) as u8);
        out.put_u8((self.key_len.bytes() / 4) as u8);
        out.put_slice(&self.salt);
        out.put_slice(self.wrapped());
    }

    /// The message as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.write(&mut out);
        out.freeze()
    }

    /// Which keys it carries.
    pub fn keys(&self) -> KeySet {
        self.keys
    }

    /// The Key Encrypting Key index (0: the stream's passphrase).
    pub fn keki(&self) -> u32 {
        self.keki
    }

    /// The cipher announced.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The length of each key.
    pub fn key_len(&self) -> KeyLen {
        self.key_len
    }

    /// The salt.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The wrapped key(s): the ICV, then the even key and/or the odd key.
    pub fn wrapped(&self) -> &[u8] {
        &self.wrapped[..ICV_LEN + self.keys.count() * self.key_len.bytes()]
    }
}

/// A passphrase of 10 to 80 bytes. Its `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase {
    bytes: [u8; PASSPHRASE_MAX],
    len: usize,
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Passphrase({} bytes)", self.len)
    }
}

impl Passphrase {
    /// The passphrase `p`, if it is 10 to 80 bytes long.
    pub fn new(p: impl AsRef<[u8]>) -> Result<Passphrase, KmError> {
        let p = p.as_ref();
        if !(PASSPHRASE_MIN..=PASSPHRASE_MAX).contains(&p.len()) {
            return Err(KmError::PassphraseLength(p.len()));
        }
        let mut bytes = [0; PASSPHRASE_MAX];
        bytes[..p.len()].copy_from_slice(p);
        Ok(Passphrase {
            bytes,
            len: p.len(),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The Key Encrypting Key and what it was derived from.
#[derive(Clone)]
struct Kek {
    key: [u8; 32],
    key_len: KeyLen,
    salt: [u8; SALT_LEN],
    passphrase: Passphrase,
}

impl Kek {
    /// PBKDF2-HMAC-SHA1 over the salt's last 8 bytes, 2048 rounds (§6.2.1).
    /// The expensive step: done once per connection.
    fn derive(passphrase: &Passphrase, salt: &[u8; SALT_LEN], key_len: KeyLen) -> Kek {
        let mut key = [0; 32];
        pbkdf2::pbkdf2_hmac::<Sha1>(
            passphrase.as_bytes(),
            &salt[SALT_LEN - PBKDF2_SALT_LEN..],
            PBKDF2_ITERATIONS,
            &mut key[..key_len.bytes()],
        );
        Kek {
            key,
            key_len,
            salt: *salt,
            passphrase: passphrase.clone(),
        }
    }

    /// This KEK if it was derived from these, else a new one (PBKDF2).
    fn reuse_or_derive(
        cached: Option<&Kek>,
        passphrase: &Passphrase,
        salt: &[u8; SALT_LEN],
        key_len: KeyLen,
    ) -> Kek {
        match cached {
            Some(k) if k.key_len == key_len && k.salt == *salt && k.passphrase == *passphrase => {
                k.clone()
            }
            _ => Kek::derive(passphrase, salt, key_len),
        }
    }

    /// RFC 3394 wrap of `plain` into `out` (8 bytes longer).
    fn wrap(&self, plain: &[u8], out: &mut [u8]) -> Result<(), KmError> {
        let key = &self.key[..self.key_len.bytes()];
        let done = match self.key_len {
            KeyLen::Aes128 => aes_kw::KekAes128::try_from(key).and_then(|k| k.wrap(plain, out)),
            KeyLen::Aes192 => aes_kw::KekAes192::try_from(key).and_then(|k| k.wrap(plain, out)),
            KeyLen::Aes256 => aes_kw::KekAes256::try_from(key).and_then(|k| k.wrap(plain, out)),
        };
        done.map_err(|_| KmError::KeyWrap)
    }

    /// RFC 3394 unwrap of `wrapped` into `out` (8 bytes shorter); a failed
    /// integrity check is a wrong passphrase.
    fn unwrap(&self, wrapped: &[u8], out: &mut [u8]) -> Result<(), KmError> {
        let key = &self.key[..self.key_len.bytes()];
        let done = match self.key_len {
            KeyLen::Aes128 => aes_kw::KekAes128::try_from(key).and_then(|k| k.unwrap(wrapped, out)),
            KeyLen::Aes192 => aes_kw::KekAes192::try_from(key).and_then(|k| k.unwrap(wrapped, out)),
            KeyLen::Aes256 => aes_kw::KekAes256::try_from(key).and_then(|k| k.unwrap(wrapped, out)),
        };
        done.map_err(|e| match e {
            aes_kw::Error::IntegrityCheckFailed => KmError::WrongPassphrase,
            _ => KmError::KeyWrap,
        })
    }
}

/// A Stream Encrypting Key: its bytes (to wrap) and its expanded AES key.
#[derive(Clone)]
struct Sek {
    bytes: [u8; 32],
    aes: AesKey,
}

#[derive(Clone)]
enum AesKey {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

impl Sek {
    /// The key in the first `key_len` bytes of `bytes`.
    fn new(key: &[u8; 32], key_len: KeyLen) -> Sek {
        let aes = match key_len {
            KeyLen::Aes128 => AesKey::Aes128(Aes128::new(&first::<16>(key).into())),
            KeyLen::Aes192 => AesKey::Aes192(Aes192::new(&first::<24>(key).into())),
            KeyLen::Aes256 => AesKey::Aes256(Aes256::new(&(*key).into())),
        };
        let mut bytes = [0; 32];
        bytes[..key_len.bytes()].copy_from_slice(&key[..key_len.bytes()]);
        Sek { bytes, aes }
    }

    fn apply_keystream(&self, iv: &[u8; 16], payload: &mut [u8]) {
        match &self.aes {
            AesKey::Aes128(c) => ctr_apply(c, iv, payload),
            AesKey::Aes192(c) => ctr_apply(c, iv, payload),
            AesKey::Aes256(c) => ctr_apply(c, iv, payload),
        }
    }
}

/// The first `N` bytes of a 32-byte key.
fn first<const N: usize>(key: &[u8; 32]) -> [u8; N] {
    let mut out = [0; N];
    for (o, k) in out.iter_mut().zip(key) {
        *o = *k;
    }
    out
}

/// AES-CTR with a 128-bit big-endian counter from `iv`.
fn ctr_apply<C>(cipher: &C, iv: &[u8; 16], payload: &mut [u8])
where
    C: BlockEncryptMut + BlockCipher<BlockSize = U16> + Clone,
{
    let core = CtrCore::<C, ctr::flavors::Ctr128BE>::inner_iv_init(cipher.clone(), iv.into());
    StreamCipherCoreWrapper::from_core(core).apply_keystream(payload);
}

/// The first counter block of a packet (§6.1.2, libsrt `hcrypt_SetCtrIV`):
/// salt bytes 0..14, bytes 10..14 XOR the sequence number, counter 0.
fn ctr_iv(salt: &[u8; SALT_LEN], packet_seq: u32) -> [u8; 16] {
    let mut iv = [0; 16];
    iv[..14].copy_from_slice(&salt[..14]);
    for (b, s) in iv[10..14].iter_mut().zip(packet_seq.to_be_bytes()) {
        *b ^= s;
    }
    iv
}

/// A connection's encryption state: the salt, the even and/or odd SEK, which
/// one this side encrypts with, and the KEK once a passphrase was used.
///
/// The initiator (caller) makes one with [`Crypto::generate`] and sends
/// [`Crypto::km_message`] in KMREQ; the responder makes its own with
/// [`Crypto::from_km`] and answers with the same bytes in KMRSP. SRT uses the
/// initiator's keys in both directions.
///
/// Refresh (§6.1.6), on the side that made the keys: [`Crypto::refresh`]
/// installs the next key (odd after even, even after odd), and
/// [`Crypto::km_message`] then announces both; the peer takes them with
/// [`Crypto::handle_km`]. At the switch-over [`Crypto::activate`] moves
/// encryption to the new key; later [`Crypto::retire`] drops the old one.
///
/// PBKDF2 (2048 rounds) runs when a passphrase meets a salt for the first
/// time: once in [`Crypto::from_km`], once in the first
/// [`Crypto::km_message`] of a generated state unless
/// [`Crypto::set_passphrase`] ran before; the KEK is kept and reused while
/// passphrase, salt and key length stay, which refreshes keep.
#[derive(Clone)]
pub struct Crypto {
    key_len: KeyLen,
    salt: [u8; SALT_LEN],
    kek: Option<Kek>,
    even: Option<Sek>,
    odd: Option<Sek>,
    current: KeyIndex,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypto")
            .field("key_len", &self.key_len)
            .field("salt", &self.salt)
            .field("even", &self.even.is_some())
            .field("odd", &self.odd.is_some())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Crypto {
    /// Fresh keys for an initiator: a random salt and an even SEK, both
    /// from `rng`.
    pub fn generate(key_len: KeyLen, rng: &mut dyn FnMut(&mut [u8])) -> Crypto {
        let mut salt = [0; SALT_LEN];
        rng(&mut salt);
        let mut c = Crypto {
            key_len,
            salt,
            kek: None,
            even: None,
            odd: None,
            current: KeyIndex::Even,
        };
        c.even = Some(c.random_sek(rng));
        c
    }

    /// The responder's state from the initiator's Key Material message (a
    /// KMREQ's content): derives the KEK from `passphrase` and unwraps the
    /// key(s). It encrypts with the even key when both are there.
    pub fn from_km(km: impl AsRef<[u8]>, passphrase: impl AsRef<[u8]>) -> Result<Crypto, KmError> {
        let km = KeyMaterial::parse(km.as_ref())?;
        let passphrase = Passphrase::new(passphrase)?;
        Crypto::from_key_material(&km, &passphrase)
    }

    /// [`Crypto::from_km`] for a parsed message and a checked passphrase.
    pub fn from_key_material(km: &KeyMaterial, passphrase: &Passphrase) -> Result<Crypto, KmError> {
        check_cipher(km)?;
        let kek = Kek::derive(passphrase, &km.salt, km.key_len);
        let (even, odd) = unwrap_keys(km, &kek)?;
        let current = if even.is_some() {
            KeyIndex::Even
        } else {
            KeyIndex::Odd
        };
        Ok(Crypto {
            key_len: km.key_len,
            salt: km.salt,
            kek: Some(kek),
            even,
            odd,
            current,
        })
    }

    /// Derives the KEK for `passphrase` now (PBKDF2), so that
    /// [`Crypto::km_message`] with the same passphrase reuses it.
    pub fn set_passphrase(&mut self, passphrase: impl AsRef<[u8]>) -> Result<(), KmError> {
        let passphrase = Passphrase::new(passphrase)?;
        self.kek = Some(Kek::reuse_or_derive(
            self.kek.as_ref(),
            &passphrase,
            &self.salt,
            self.key_len,
        ));
        Ok(())
    }

    /// Takes the peer's refreshed key material (a KMREQ control packet) and
    /// installs the key(s) it carries. The KEK is reused while passphrase,
    /// salt and key length stay; a new salt derives a new KEK and drops the
    /// keys of the old salt. Nothing changes on an error.
    pub fn handle_km(&mut self, km: &KeyMaterial, passphrase: &Passphrase) -> Result<(), KmError> {
        check_cipher(km)?;
        if km.key_len != self.key_len {
            return Err(KmError::KeyLengthChanged {
                from: self.key_len.bytes(),
                to: km.key_len.bytes(),
            });
        }
        let kek = Kek::reuse_or_derive(self.kek.as_ref(), passphrase, &km.salt, km.key_len);
        let (even, odd) = unwrap_keys(km, &kek)?;
        if km.salt != self.salt {
            // The salt is in every counter block: keys under the old one go.
            self.even = None;
            self.odd = None;
            self.salt = km.salt;
        }
        self.kek = Some(kek);
        if even.is_some() {
            self.even = even;
        }
        if odd.is_some() {
            self.odd = odd;
        }
        if self.key(self.current).is_none() {
            self.current = self.current.other();
        }
        Ok(())
    }

    /// The Key Material message announcing the installed key(s), wrapped
    /// under the KEK of `passphrase`: a KMREQ's content, or a refresh
    /// packet's payload. RFC 3394 is deterministic: the same keys and
    /// passphrase give the same bytes.
    pub fn km_message(&self, passphrase: impl AsRef<[u8]>) -> Result<Bytes, KmError> {
        let passphrase = Passphrase::new(passphrase)?;
        Ok(self.key_material(&passphrase)?.to_bytes())
    }

    /// [`Crypto::km_message`] as a parsed message, for a checked passphrase.
    pub fn key_material(&self, passphrase: &Passphrase) -> Result<KeyMaterial, KmError> {
        let kek = Kek::reuse_or_derive(self.kek.as_ref(), passphrase, &self.salt, self.key_len);
        let n = self.key_len.bytes();
        let mut plain = [0; 64];
        let keys = match (&self.even, &self.odd) {
            (Some(e), Some(o)) => {
                plain[..n].copy_from_slice(&e.bytes[..n]);
                plain[n..2 * n].copy_from_slice(&o.bytes[..n]);
                KeySet::Both
            }
            (Some(k), None) => {
                plain[..n].copy_from_slice(&k.bytes[..n]);
                KeySet::Even
            }
            (None, Some(k)) => {
                plain[..n].copy_from_slice(&k.bytes[..n]);
                KeySet::Odd
            }
            // Every constructor installs a key and `retire` keeps the current one.
            (None, None) => return Err(KmError::MissingKey(self.current)),
        };
        let plain_len = keys.count() * n;
        let mut wrapped = [0; ICV_LEN + 64];
        kek.wrap(&plain[..plain_len], &mut wrapped[..ICV_LEN + plain_len])?;
        Ok(KeyMaterial {
            keys,
            keki: 0,
            cipher: Cipher::Ctr,
            key_len: self.key_len,
            salt: self.salt,
            wrapped,
        })
    }

    /// Makes the next key (in the slot the current key is not in) from
    /// `rng` and installs it beside the current one; returns its slot. The
    /// salt and the KEK stay.
    pub fn refresh(&mut self, rng: &mut dyn FnMut(&mut [u8])) -> KeyIndex {
        let next = self.current.other();
        let sek = self.random_sek(rng);
        *self.slot(next) = Some(sek);
        next
    }

    /// Encrypts with `key` from now on, if it is installed.
    pub fn activate(&mut self, key: KeyIndex) -> Result<(), KmError> {
        if self.key(key).is_none() {
            return Err(KmError::MissingKey(key));
        }
        self.current = key;
        Ok(())
    }

    /// Drops `key` (the old one, after a switch-over); the current key
    /// stays. Returns whether a key was dropped.
    pub fn retire(&mut self, key: KeyIndex) -> bool {
        if key == self.current {
            return false;
        }
        self.slot(key).take().is_some()
    }

    /// Encrypts a data packet's payload in place with `key`; `packet_seq` is
    /// the packet's sequence number. Its `KK` must then say `key`. The
    /// current key ([`Crypto::current_key`]) is always installed.
    pub fn encrypt(
        &self,
        key: KeyIndex,
        packet_seq: u32,
        payload: &mut [u8],
    ) -> Result<(), KmError> {
        let sek = self.key(key).ok_or(KmError::MissingKey(key))?;
        sek.apply_keystream(&ctr_iv(&self.salt, packet_seq), payload);
        Ok(())
    }

    /// Decrypts a data packet's payload in place with the key its `KK` names.
    pub fn decrypt(
        &self,
        key: KeyIndex,
        packet_seq: u32,
        payload: &mut [u8],
    ) -> Result<(), KmError> {
        // CTR: the same keystream both ways.
        self.encrypt(key, packet_seq, payload)
    }

    /// The key this side encrypts with.
    pub fn current_key(&self) -> KeyIndex {
        self.current
    }

    /// Whether `key` is installed.
    pub fn has_key(&self, key: KeyIndex) -> bool {
        self.key(key).is_some()
    }

    /// The key length.
    pub fn key_len(&self) -> KeyLen {
        self.key_len
    }

    /// The salt.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    fn key(&self, key: KeyIndex) -> Option<&Sek> {
        match key {
            KeyIndex::Even => self.even.as_ref(),
            KeyIndex::Odd => self.odd.as_ref(),
        }
    }

    fn slot(&mut self, key: KeyIndex) -> &mut Option<Sek> {
        match key {
            KeyIndex::Even => &mut self.even,
            KeyIndex::Odd => &mut self.odd,
        }
    }

    fn random_sek(&self, rng: &mut dyn FnMut(&mut [u8])) -> Sek {
        let mut key = [0; 32];
        rng(&mut key[..self.key_len.bytes()]);
        Sek::new(&key, self.key_len)
    }
}

/// Refuses the ciphers this module does not implement.
fn check_cipher(km: &KeyMaterial) -> Result<(), KmError> {
    match km.cipher {
        Cipher::Ctr => Ok(()),
        other => Err(KmError::UnsupportedCipher(other)),
    }
}

/// Unwraps a message's key(s) into (even, odd).
fn unwrap_keys(km: &KeyMaterial, kek: &Kek) -> Result<(Option<Sek>, Option<Sek>), KmError> {
    let n = km.key_len.bytes();
    let wrapped = km.wrapped();
    let mut plain = [0; 64];
    kek.unwrap(wrapped, &mut plain[..wrapped.len() - ICV_LEN])?;
    let key_at = |at: usize| {
        let mut key = [0; 32];
        key[..n].copy_from_slice(&plain[at..at + n]);
        Sek::new(&key, km.key_len)
    };
    Ok(match km.keys {
        KeySet::Even => (Some(key_at(0)), None),
        KeySet::Odd => (None, Some(key_at(0))),
        KeySet::Both => (Some(key_at(0)), Some(key_at(n))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PASS: &str = "arcly-srt-test-passphrase";

    /// One datagram of a capture: who sent it, and its bytes.
    struct Datagram {
        from_caller: bool,
        bytes: Vec<u8>,
    }

    /// Reads a capture file of `testdata/crypto/` (`c2l|l2c <hex>` lines).
    fn capture(text: &str) -> Vec<Datagram> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (dir, hex) = l.split_once(' ').expect("direction and hex");
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                    .collect();
                Datagram {
                    from_caller: dir == "c2l",
                    bytes,
                }
            })
            .collect()
    }

    fn be32(d: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
    }

    /// The content of handshake extension `kind` (after the 16-byte header
    /// and the 48-byte handshake body: type u16, length in words u16).
    fn extension(d: &[u8], kind: u16) -> Option<&[u8]> {
        assert_eq!(d[0] & 0x80, 0x80, "a control packet");
        assert_eq!(u16::from_be_bytes([d[0], d[1]]) & 0x7FFF, 0, "a handshake");
        let mut at = 16 + 48;
        while at + 4 <= d.len() {
            let t = u16::from_be_bytes([d[at], d[at + 1]]);
            let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]])) * 4;
            let content = &d[at + 4..at + 4 + len];
            if t == kind {
                return Some(content);
            }
            at += 4 + len;
        }
        None
    }

    /// A data packet's sequence number, `KK` and payload.
    fn data(d: &[u8]) -> (u32, u8, &[u8]) {
        assert_eq!(d[0] & 0x80, 0, "a data packet");
        (be32(d, 0), ((be32(d, 4) >> 27) & 3) as u8, &d[16..])
    }

    struct Case {
        key_len: KeyLen,
        capture: &'static str,
        plain: &'static [u8],
    }

    const CASES: [Case; 3] = [
        Case {
            key_len: KeyLen::Aes128,
            capture: include_str!("../testdata/crypto/aes128.txt"),
            plain: include_bytes!("../testdata/crypto/aes128.plain.ts"),
        },
        Case {
            key_len: KeyLen::Aes192,
            capture: include_str!("../testdata/crypto/aes192.txt"),
            plain: include_bytes!("../testdata/crypto/aes192.plain.ts"),
        },
        Case {
            key_len: KeyLen::Aes256,
            capture: include_str!("../testdata/crypto/aes256.txt"),
            plain: include_bytes!("../testdata/crypto/aes256.plain.ts"),
        },
    ];

    fn kmreq(c: &[Datagram]) -> &[u8] {
        c.iter()
            .filter(|d| d.from_caller)
            .find_map(|d| extension(&d.bytes, 3))
            .expect("a KMREQ from the caller")
    }

    fn kmrsp(c: &[Datagram]) -> &[u8] {
        c.iter()
            .filter(|d| !d.from_caller)
            .find_map(|d| extension(&d.bytes, 4))
            .expect("a KMRSP from the listener")
    }

    fn pass() -> Passphrase {
        Passphrase::new(PASS).expect("a valid passphrase")
    }

    /// A deterministic "random" source for tests (xorshift64).
    fn counter_rng(seed: u8) -> impl FnMut(&mut [u8]) {
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
        move |buf: &mut [u8]| {
            for b in buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x >> 32) as u8;
            }
        }
    }

    #[test]
    fn libsrt_km_parses_as_the_draft_draws_it() {
        for case in &CASES {
            let c = capture(case.capture);
            let raw = kmreq(&c);
            // No word swap: the first word is V=1 PT=2, 0x2029, KK=01.
            assert_eq!(raw[..4], [0x12, 0x20, 0x29, 0x01]);
            let km = KeyMaterial::parse(raw).expect("libsrt's KMREQ");
            assert_eq!(km.keys(), KeySet::Even);
            assert_eq!(km.keki(), 0);
            assert_eq!(km.cipher(), Cipher::Ctr);
            assert_eq!(km.key_len(), case.key_len);
            assert_eq!(km.wrapped().len(), 8 + case.key_len.bytes());
            assert_eq!(
                km.to_bytes()[..],
                raw[..],
                "build gives libsrt's bytes back"
            );
            // The handshake's Encryption Field says the same length.
            let hs = &c.iter().find(|d| d.from_caller).expect("KMREQ").bytes;
            let field = (be32(hs, 16 + 4) >> 16) as u16;
            assert_eq!(KeyLen::from_handshake(field), Some(case.key_len));
            assert_eq!(case.key_len.handshake_field(), field);
        }
    }

    #[test]
    fn libsrt_kmrsp_echoes_the_kmreq() {
        for case in &CASES {
            let c = capture(case.capture);
            assert_eq!(kmrsp(&c), kmreq(&c));
            match KmResponse::parse(kmrsp(&c)) {
                Ok(KmResponse::Accepted(km)) => assert_eq!(km.to_bytes()[..], kmreq(&c)[..]),
                other => panic!("expected the echoed KM, got {other:?}"),
            }
        }
    }

    #[test]
    fn libsrt_payloads_decrypt_to_its_mpeg_ts() {
        for case in &CASES {
            let c = capture(case.capture);
            let km = KeyMaterial::parse(kmreq(&c)).expect("KMREQ");
            let crypto = Crypto::from_key_material(&km, &pass()).expect("the right passphrase");
            let mut at = 0;
            let mut packets = 0;
            for d in c.iter().filter(|d| d.bytes[0] & 0x80 == 0) {
                let (seq, kk, payload) = data(&d.bytes);
                let key = KeyIndex::from_kk(kk).expect("an encrypted packet");
                let mut p = payload.to_vec();
                crypto.decrypt(key, seq, &mut p).expect("the even key");
                assert_eq!(p.len() % 188, 0);
                assert!(p.chunks(188).all(|ts| ts[0] == 0x47), "MPEG-TS sync bytes");
                assert_eq!(
                    p[..],
                    case.plain[at..at + p.len()],
                    "what the caller wrote out"
                );
                at += p.len();
                packets += 1;
            }
            assert_eq!(packets, 5);
            assert_eq!(at, case.plain.len());
        }
    }

    #[test]
    fn our_encryption_equals_libsrt_ciphertext() {
        for case in &CASES {
            let c = capture(case.capture);
            let km = KeyMaterial::parse(kmreq(&c)).expect("KMREQ");
            let crypto = Crypto::from_key_material(&km, &pass()).expect("the right passphrase");
            let mut at = 0;
            for d in c.iter().filter(|d| d.bytes[0] & 0x80 == 0) {
                let (seq, kk, payload) = data(&d.bytes);
                let key = KeyIndex::from_kk(kk).expect("an encrypted packet");
                let mut p = case.plain[at..at + payload.len()].to_vec();
                crypto.encrypt(key, seq, &mut p).expect("the even key");
                assert_eq!(p[..], payload[..], "{:?} seq {seq}", case.key_len);
                at += p.len();
            }
        }
    }

    #[test]
    fn rewrapping_the_unwrapped_keys_gives_libsrt_km() {
        for case in &CASES {
            let c = capture(case.capture);
            let crypto = Crypto::from_km(kmreq(&c), PASS).expect("the right passphrase");
            assert_eq!(crypto.key_len(), case.key_len);
            assert_eq!(crypto.current_key(), KeyIndex::Even);
            let again = crypto.km_message(PASS).expect("wrap");
            assert_eq!(again[..], kmreq(&c)[..]);
        }
    }

    #[test]
    fn byte_level_entry_points_check_their_inputs() {
        let c = capture(CASES[0].capture);
        assert_eq!(
            Crypto::from_km(kmreq(&c), "short").err(),
            Some(KmError::PassphraseLength(5))
        );
        assert_eq!(
            Crypto::from_km(&kmreq(&c)[..20], PASS).err(),
            Some(KmError::Length {
                expected: 56,
                actual: 20
            })
        );
        assert_eq!(
            Crypto::from_km(kmreq(&c), "not-the-passphrase").err(),
            Some(KmError::WrongPassphrase)
        );
        let mut made = Crypto::generate(KeyLen::Aes192, &mut counter_rng(4));
        let lazily = made.km_message(PASS).expect("wrap");
        made.set_passphrase(PASS).expect("valid");
        assert_eq!(made.km_message(PASS).expect("wrap"), lazily);
        assert_eq!(
            made.km_message("x").err(),
            Some(KmError::PassphraseLength(1))
        );
        let peer = Crypto::from_km(&lazily, PASS).expect("our own KM");
        let mut buf = *b"0123456789abcdef0123";
        made.encrypt(made.current_key(), 0x7FFF_FFFF, &mut buf)
            .expect("current key");
        peer.decrypt(KeyIndex::Even, 0x7FFF_FFFF, &mut buf)
            .expect("even key");
        assert_eq!(&buf, b"0123456789abcdef0123");
    }

    #[test]
    fn wrong_passphrase_is_reported_as_such() {
        let c = capture(CASES[0].capture);
        let km = KeyMaterial::parse(kmreq(&c)).expect("KMREQ");
        let wrong = Passphrase::new("not-the-passphrase").expect("valid");
        assert_eq!(
            Crypto::from_key_material(&km, &wrong).err(),
            Some(KmError::WrongPassphrase)
        );
        // libsrt's caller with another passphrase than the listener's: the
        // listener rejected it (1000 + SRT_REJ_BADSECRET = 1010).
        let c = capture(include_str!("../testdata/crypto/wrong_passphrase.txt"));
        let km = KeyMaterial::parse(kmreq(&c)).expect("KMREQ");
        assert_eq!(
            Crypto::from_key_material(&km, &pass()).err(),
            Some(KmError::WrongPassphrase)
        );
        let theirs = Passphrase::new("wrong-passphrase-here").expect("valid");
        assert!(Crypto::from_key_material(&km, &theirs).is_ok());
        let rejection = &c.iter().find(|d| !d.from_caller).expect("an answer").bytes;
        assert_eq!(be32(rejection, 16 + 20), 1010);
    }

    #[test]
    fn kek_salt_is_the_last_8_salt_bytes() {
        let c = capture(CASES[0].capture);
        let raw = kmreq(&c).to_vec();
        // The KEK is all that unwrapping depends on: changing salt bytes
        // 0..8 keeps it, changing one of 8..16 loses it.
        for i in 0..SALT_LEN {
            let mut m = raw.clone();
            m[16 + i] ^= 0x01;
            let km = KeyMaterial::parse(&m).expect("still well formed");
            let r = Crypto::from_key_material(&km, &pass());
            if i < 8 {
                assert!(r.is_ok(), "salt byte {i} is not in the KEK");
            } else {
                assert_eq!(r.err(), Some(KmError::WrongPassphrase), "salt byte {i}");
            }
        }
    }

    #[test]
    fn libsrt_failure_kmrsp_is_a_little_endian_word() {
        let c = capture(include_str!("../testdata/crypto/no_secret.txt"));
        assert!(KeyMaterial::parse(kmreq(&c)).is_ok());
        assert_eq!(kmrsp(&c), [3, 0, 0, 0]);
        assert_eq!(
            KmResponse::parse(kmrsp(&c)),
            Ok(KmResponse::Failed(KmState::NoSecret))
        );
        assert_eq!(KmState::BadSecret.to_wire(), [4, 0, 0, 0]);
        assert_eq!(
            KmResponse::parse(&[9, 0, 0, 0]),
            Err(KmError::UnknownState(9))
        );
    }

    #[test]
    fn passphrase_length_follows_libsrt() {
        assert_eq!(
            Passphrase::new([b'a'; 9]).err(),
            Some(KmError::PassphraseLength(9))
        );
        assert!(Passphrase::new([b'a'; 10]).is_ok());
        assert!(Passphrase::new([b'a'; 80]).is_ok());
        assert_eq!(
            Passphrase::new([b'a'; 81]).err(),
            Some(KmError::PassphraseLength(81))
        );
        assert_eq!(
            Passphrase::new("").err(),
            Some(KmError::PassphraseLength(0))
        );
        assert_eq!(format!("{:?}", pass()), "Passphrase(25 bytes)");
    }

    #[test]
    fn gcm_is_recognised_and_refused() {
        let c = capture(CASES[0].capture);
        let mut m = kmreq(&c).to_vec();
        m[8] = 4;
        m[9] = 1;
        let km = KeyMaterial::parse(&m).expect("GCM parses");
        assert_eq!(km.cipher(), Cipher::Gcm);
        assert_eq!(
            Crypto::from_key_material(&km, &pass()).err(),
            Some(KmError::UnsupportedCipher(Cipher::Gcm))
        );
        m[9] = 0;
        assert_eq!(
            KeyMaterial::parse(&m).err(),
            Some(KmError::Auth {
                cipher: Cipher::Gcm,
                auth: 0
            })
        );
        m[8] = 0;
        let km = KeyMaterial::parse(&m).expect("cipher none parses");
        assert_eq!(
            Crypto::from_key_material(&km, &pass()).err(),
            Some(KmError::UnsupportedCipher(Cipher::None))
        );
    }

    #[test]
    fn malformed_key_material_is_refused_with_its_cause() {
        let c = capture(CASES[0].capture);
        let good = kmreq(&c).to_vec();
        let with = |at: usize, v: u8| {
            let mut m = good.clone();
            m[at] = v;
            KeyMaterial::parse(&m).err()
        };
        assert_eq!(with(0, 0x22), Some(KmError::Version(2)));
        assert_eq!(with(0, 0x92), Some(KmError::Version(9)), "the S bit");
        assert_eq!(with(0, 0x11), Some(KmError::PacketType(1)));
        assert_eq!(with(1, 0x21), Some(KmError::Signature(0x2129)));
        assert_eq!(with(3, 0x00), Some(KmError::NoKeys));
        assert_eq!(with(8, 1), Some(KmError::UnknownCipher(1)));
        assert_eq!(with(8, 3), Some(KmError::UnknownCipher(3)));
        assert_eq!(
            with(9, 1),
            Some(KmError::Auth {
                cipher: Cipher::Ctr,
                auth: 1
            })
        );
        assert_eq!(with(10, 1), Some(KmError::StreamEncapsulation(1)));
        assert_eq!(with(14, 2), Some(KmError::SaltLength(8)));
        assert_eq!(with(15, 5), Some(KmError::KeyLength(20)));
        assert_eq!(
            with(15, 6),
            Some(KmError::Length {
                expected: 64,
                actual: 56
            })
        );
        assert_eq!(
            with(3, 0x03),
            Some(KmError::Length {
                expected: 72,
                actual: 56
            })
        );
        assert_eq!(
            KeyMaterial::parse(&good[..15]).err(),
            Some(KmError::TooShort { len: 15 })
        );
        assert_eq!(
            KeyMaterial::parse(&good[..52]).err(),
            Some(KmError::Length {
                expected: 56,
                actual: 52
            })
        );
        // Reserved bits are ignored.
        assert!(with(3, 0xFD).is_none());
        assert!(with(11, 0xFF).is_none());
        assert!(with(12, 0xFF).is_none());
    }

    #[test]
    fn counter_block_layout() {
        let salt: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let iv = ctr_iv(&salt, 0x1122_3344);
        assert_eq!(
            iv,
            [
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
                10,
                11 ^ 0x11,
                12 ^ 0x22,
                13 ^ 0x33,
                14 ^ 0x44,
                0,
                0
            ]
        );
    }

    #[test]
    fn refresh_announces_both_keys_and_the_peer_follows() {
        let p = pass();
        let mut rng = counter_rng(1);
        let mut sender = Crypto::generate(KeyLen::Aes256, &mut rng);
        assert_eq!(sender.current_key(), KeyIndex::Even);
        let km = sender.key_material(&p).expect("wrap");
        assert_eq!(km.keys(), KeySet::Even);
        let mut receiver = Crypto::from_key_material(&km, &p).expect("same passphrase");

        let next = sender.refresh(&mut rng);
        assert_eq!(next, KeyIndex::Odd);
        assert_eq!(sender.current_key(), KeyIndex::Even, "not switched yet");
        let both = sender.key_material(&p).expect("wrap");
        assert_eq!(both.keys(), KeySet::Both);
        assert_eq!(both.salt(), km.salt(), "the salt stays");
        assert_eq!(both.wrapped().len(), 8 + 64);
        receiver.handle_km(&both, &p).expect("refresh");
        assert!(receiver.has_key(KeyIndex::Even) && receiver.has_key(KeyIndex::Odd));
        // Even first in a two-key message: re-wrapping gives the same bytes.
        assert_eq!(receiver.key_material(&p).expect("wrap"), both);

        for key in [KeyIndex::Even, KeyIndex::Odd] {
            let plain: Vec<u8> = (0..1316u32).map(|i| i as u8).collect();
            let mut buf = plain.clone();
            sender.encrypt(key, 77, &mut buf).expect("installed");
            assert_ne!(buf, plain);
            receiver.decrypt(key, 77, &mut buf).expect("installed");
            assert_eq!(buf, plain, "{key:?}");
        }

        sender.activate(next).expect("installed");
        assert!(!sender.retire(KeyIndex::Odd), "the active key stays");
        assert!(sender.retire(KeyIndex::Even));
        assert!(!sender.retire(KeyIndex::Even));
        let mut buf = [0u8; 4];
        assert_eq!(
            sender.encrypt(KeyIndex::Even, 1, &mut buf),
            Err(KmError::MissingKey(KeyIndex::Even))
        );
        let odd_only = sender.key_material(&p).expect("wrap");
        assert_eq!(odd_only.keys(), KeySet::Odd);
        receiver.handle_km(&odd_only, &p).expect("same keys");
        // The next refresh makes an even key again.
        assert_eq!(sender.refresh(&mut rng), KeyIndex::Even);

        let other_len = Crypto::generate(KeyLen::Aes128, &mut rng);
        assert_eq!(
            receiver.handle_km(&other_len.key_material(&p).expect("wrap"), &p),
            Err(KmError::KeyLengthChanged { from: 32, to: 16 })
        );
        let wrong = Passphrase::new("0123456789").expect("valid");
        let before = receiver.key_material(&p).expect("wrap");
        let fresh = Crypto::generate(KeyLen::Aes256, &mut rng);
        assert_eq!(
            receiver.handle_km(&fresh.key_material(&wrong).expect("wrap"), &p),
            Err(KmError::WrongPassphrase)
        );
        assert_eq!(
            receiver.key_material(&p).expect("wrap"),
            before,
            "unchanged"
        );
    }

    #[test]
    fn a_new_salt_replaces_the_keys() {
        let p = pass();
        let mut rng = counter_rng(9);
        let first = Crypto::generate(KeyLen::Aes128, &mut rng);
        let mut receiver =
            Crypto::from_km(first.km_message(PASS).expect("wrap"), PASS).expect("ok");
        let mut second = Crypto::generate(KeyLen::Aes128, &mut rng);
        second.refresh(&mut rng);
        second.activate(KeyIndex::Odd).expect("installed");
        second.retire(KeyIndex::Even);
        receiver
            .handle_km(&second.key_material(&p).expect("wrap"), &p)
            .expect("same passphrase");
        assert_eq!(receiver.salt(), second.salt());
        assert!(!receiver.has_key(KeyIndex::Even), "the old salt's key went");
        assert_eq!(receiver.current_key(), KeyIndex::Odd);
    }

    #[test]
    fn handshake_field_and_kk_values() {
        assert_eq!(KeyLen::from_handshake(0), None);
        assert_eq!(KeyLen::from_bytes(20), None);
        assert_eq!(KeyIndex::from_kk(0), None);
        assert_eq!(KeyIndex::from_kk(3), None);
        assert_eq!(KeyIndex::Odd.kk(), 2);
        assert_eq!(KeySet::from_kk(0), None);
        assert_eq!(Cipher::from_code(2), Some(Cipher::Ctr));
    }

    fn any_key_len() -> impl Strategy<Value = KeyLen> {
        prop_oneof![
            Just(KeyLen::Aes128),
            Just(KeyLen::Aes192),
            Just(KeyLen::Aes256)
        ]
    }

    fn any_key_set() -> impl Strategy<Value = KeySet> {
        prop_oneof![Just(KeySet::Even), Just(KeySet::Odd), Just(KeySet::Both)]
    }

    fn any_cipher() -> impl Strategy<Value = Cipher> {
        prop_oneof![Just(Cipher::None), Just(Cipher::Ctr), Just(Cipher::Gcm)]
    }

    proptest! {
        #[test]
        fn parsing_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = KeyMaterial::parse(&d);
            let _ = KmResponse::parse(&d);
        }

        #[test]
        fn parsing_a_mutated_km_never_panics(
            at in 0usize..56, v in any::<u8>(), cut in 0usize..=56,
        ) {
            let c = capture(CASES[0].capture);
            let mut m = kmreq(&c).to_vec();
            m[at] = v;
            m.truncate(cut);
            let _ = KeyMaterial::parse(&m);
        }

        #[test]
        fn build_then_parse_round_trips(
            keys in any_key_set(), keki in any::<u32>(), cipher in any_cipher(),
            key_len in any_key_len(), salt in any::<[u8; 16]>(),
            wrap in proptest::collection::vec(any::<u8>(), 72),
        ) {
            let mut wrapped = [0; ICV_LEN + 64];
            let n = ICV_LEN + keys.count() * key_len.bytes();
            wrapped[..n].copy_from_slice(&wrap[..n]);
            let km = KeyMaterial { keys, keki, cipher, key_len, salt, wrapped };
            let b = km.to_bytes();
            prop_assert_eq!(b.len(), km.encoded_len());
            prop_assert_eq!(b.len() % 4, 0);
            prop_assert_eq!(KeyMaterial::parse(&b), Ok(km));
        }

        #[test]
        fn encrypt_then_decrypt_round_trips(
            seq in any::<u32>(), odd in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mut c = sample();
            c.refresh(&mut counter_rng(5));
            let key = if odd { KeyIndex::Odd } else { KeyIndex::Even };
            let mut p = payload.clone();
            c.encrypt(key, seq, &mut p).expect("installed");
            c.decrypt(key, seq, &mut p).expect("installed");
            prop_assert_eq!(p, payload);
        }
    }

    /// One generated state, made once (PBKDF2 is slow in debug builds).
    fn sample() -> Crypto {
        use std::sync::OnceLock;
        static SAMPLE: OnceLock<Crypto> = OnceLock::new();
        SAMPLE
            .get_or_init(|| Crypto::generate(KeyLen::Aes128, &mut counter_rng(3)))
            .clone()
    }
}
