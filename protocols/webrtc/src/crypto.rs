//! The cryptography str0m needs, in pure Rust: DTLS 1.2 by dimpl on its
//! RustCrypto backend, the SRTP ciphers (AES-128-CM with HMAC-SHA1-80,
//! AEAD AES-128-GCM and AES-256-GCM) and the hashes by RustCrypto crates,
//! and the self-signed ECDSA P-256 certificate a peer shows in DTLS, built
//! with `x509-cert`.
//!
//! str0m ships such a backend (`rust-crypto`), but it has dimpl make the
//! certificate through rcgen, which signs with aws-lc-rs and so builds C.
//! Everything here is Rust; nothing is written by hand that a kept crate
//! does: each cipher and hash is a RustCrypto primitive called the way the
//! SRTP RFCs (3711, 7714) use it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes::cipher::consts::{U12, U16};
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit, KeyIvInit, StreamCipher};
use aes_gcm::aead::AeadInPlace;
use hmac::{Hmac, Mac};
use str0m::crypto::dtls::{DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider};
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoError, CryptoProvider,
    Sha1HmacProvider, Sha256Provider, SrtpProvider, SupportedAeadAes128Gcm, SupportedAeadAes256Gcm,
    SupportedAes128CmSha1_80,
};

/// How long a generated certificate is valid (a peer's certificate is
/// pinned by the fingerprint in the SDP, not by a chain or a date; a year
/// is what browsers make).
const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The GCM tag length (RFC 7714).
const GCM_TAG: usize = 16;

/// The provider to hand str0m (`RtcConfig::set_crypto_provider`).
pub fn provider() -> CryptoProvider {
    static SRTP: Srtp = Srtp;
    static SHA1_HMAC: Sha1HmacImpl = Sha1HmacImpl;
    static SHA256: Sha256Impl = Sha256Impl;
    static DTLS: Dtls = Dtls;
    CryptoProvider {
        srtp_provider: &SRTP,
        sha1_hmac_provider: &SHA1_HMAC,
        sha256_provider: &SHA256,
        dtls_provider: &DTLS,
    }
}

/// [`provider`], shared.
pub fn shared_provider() -> Arc<CryptoProvider> {
    Arc::new(provider())
}

/// Why a certificate could not be made.
#[derive(Debug)]
pub struct CertError(String);

impl core::fmt::Display for CertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "cannot make a DTLS certificate: {}", self.0)
    }
}

impl std::error::Error for CertError {}

fn cert_err(e: impl core::fmt::Display) -> CertError {
    CertError(e.to_string())
}

/// A fresh self-signed certificate: an ECDSA P-256 key from the operating
/// system's randomness, a random 16-byte serial (Firefox refuses two
/// certificates with one issuer and serial, across processes too), the
/// certificate and the key (PKCS#8) in DER.
pub fn generate_certificate() -> Result<DtlsCert, CertError> {
    use p256::ecdsa::{DerSignature, SigningKey};
    use p256::pkcs8::EncodePrivateKey;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::Encode;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    let key = loop {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(cert_err)?;
        // Out of the curve's range about once in 2^32 draws: draw again.
        if let Ok(k) = SigningKey::from_slice(&secret) {
            break k;
        }
    };
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).map_err(cert_err)?;
    // Positive and without a leading zero octet, as DER wants.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let serial = SerialNumber::new(&serial).map_err(cert_err)?;
    let validity = Validity::from_now(CERT_VALIDITY).map_err(cert_err)?;
    let subject = Name::from_str("CN=arcly").map_err(cert_err)?;
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(cert_err)?;
    // An end entity certificate, its own issuer: its key usage is digital
    // signature, which OpenSSL (ffmpeg's DTLS) requires of an ECDSA
    // certificate it verifies a handshake with; a root's would be
    // certificate signing only.
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    let builder = CertificateBuilder::new(profile, serial, validity, subject, spki, &key)
        .map_err(cert_err)?;
    let cert = builder.build::<DerSignature>().map_err(cert_err)?;
    Ok(DtlsCert {
        certificate: cert.to_der().map_err(cert_err)?,
        private_key: key.to_pkcs8_der().map_err(cert_err)?.as_bytes().to_vec(),
    })
}

#[derive(Debug)]
struct Dtls;

impl DtlsProvider for Dtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        generate_certificate().ok()
    }

    fn new_dtls(&self, cert: &DtlsCert) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = dimpl::Config::builder()
            .build()
            .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?;
        let dtls = dimpl::Dtls::new(Arc::new(config), cert.clone());
        Ok(Box::new(DtlsSession(dtls)))
    }
}

/// One DTLS association (dimpl's state machine).
struct DtlsSession(dimpl::Dtls);

impl core::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DtlsSession")
    }
}

impl DtlsInstance for DtlsSession {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }
}

#[derive(Debug)]
struct Sha1HmacImpl;

impl Sha1HmacProvider for Sha1HmacImpl {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        // HMAC takes a key of any length.
        let Ok(mut mac) = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key) else {
            return [0; 20];
        };
        for p in payloads {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug)]
struct Sha256Impl;

impl Sha256Provider for Sha256Impl {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }
}

#[derive(Debug)]
struct Srtp;

impl SrtpProvider for Srtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        static F: AesCmFactory = AesCmFactory;
        &F
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        static F: Gcm128Factory = Gcm128Factory;
        &F
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        static F: Gcm256Factory = Gcm256Factory;
        &F
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        ecb_round::<aes::Aes128>(key, input, output);
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        ecb_round::<aes::Aes256>(key, input, output);
    }
}

/// One AES block of `input` under `key` into `output` (the SRTP key
/// derivation's PRF, RFC 3711 §4.3.3). Wrong sizes leave `output` as is.
fn ecb_round<C>(key: &[u8], input: &[u8], output: &mut [u8])
where
    C: KeyInit + BlockEncrypt + BlockSizeUser<BlockSize = U16>,
{
    let Ok(cipher) = C::new_from_slice(key) else {
        return;
    };
    if input.len() < 16 || output.len() < 16 {
        return;
    }
    let mut block = GenericArray::clone_from_slice(&input[..16]);
    cipher.encrypt_block(&mut block);
    output[..16].copy_from_slice(&block);
}

#[derive(Debug)]
struct AesCmFactory;

impl SupportedAes128CmSha1_80 for AesCmFactory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(AesCm { key })
    }
}

/// AES-128 in counter mode, the IV the first counter block (RFC 3711
/// §4.1.1); the same operation both ways.
#[derive(Debug)]
struct AesCm {
    key: [u8; 16],
}

impl AesCm {
    fn apply(&self, iv: &[u8; 16], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        let out = output
            .get_mut(..input.len())
            .ok_or_else(|| CryptoError::Other("SRTP output shorter than its input".into()))?;
        let mut c = ctr::Ctr128BE::<aes::Aes128>::new(&self.key.into(), iv.into());
        c.apply_keystream_b2b(input, out)
            .map_err(|e| CryptoError::Other(format!("AES-CM: {e}")))
    }
}

impl Aes128CmSha1_80Cipher for AesCm {
    fn encrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.apply(iv, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.apply(iv, input, output)
    }
}

#[derive(Debug)]
struct Gcm128Factory;

impl SupportedAeadAes128Gcm for Gcm128Factory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Gcm(aes_gcm::Aes128Gcm::new(&key.into())))
    }
}

#[derive(Debug)]
struct Gcm256Factory;

impl SupportedAeadAes256Gcm for Gcm256Factory {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Gcm(aes_gcm::Aes256Gcm::new(&key.into())))
    }
}

/// AEAD AES-GCM for SRTP (RFC 7714): the tag follows the ciphertext.
struct Gcm<A>(A);

impl<A> core::fmt::Debug for Gcm<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Gcm")
    }
}

impl<A: AeadInPlace<NonceSize = U12>> Gcm<A> {
    fn seal(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let n = input.len();
        if output.len() < n + GCM_TAG {
            return Err(CryptoError::Other(
                "SRTP output too short for the GCM tag".into(),
            ));
        }
        output[..n].copy_from_slice(input);
        let tag = self
            .0
            .encrypt_in_place_detached(GenericArray::from_slice(iv), aad, &mut output[..n])
            .map_err(|_| CryptoError::Other("AES-GCM encryption failed".into()))?;
        output[n..n + GCM_TAG].copy_from_slice(&tag);
        Ok(())
    }

    fn open(
        &self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let Some(n) = input.len().checked_sub(GCM_TAG) else {
            return Err(CryptoError::Other(
                "SRTP packet shorter than a GCM tag".into(),
            ));
        };
        if output.len() < n {
            return Err(CryptoError::Other(
                "SRTP output shorter than its input".into(),
            ));
        }
        let aad = aads.concat();
        output[..n].copy_from_slice(&input[..n]);
        let tag = aes_gcm::Tag::clone_from_slice(&input[n..]);
        self.0
            .decrypt_in_place_detached(GenericArray::from_slice(iv), &aad, &mut output[..n], &tag)
            .map_err(|_| CryptoError::Other("AES-GCM authentication failed".into()))?;
        Ok(n)
    }
}

impl AeadAes128GcmCipher for Gcm<aes_gcm::Aes128Gcm> {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

impl AeadAes256GcmCipher for Gcm<aes_gcm::Aes256Gcm> {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}
