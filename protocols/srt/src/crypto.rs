//! TEMPORARY stub (replaced by the real module).
#![allow(missing_docs, clippy::unwrap_used, dead_code)]
use bytes::Bytes;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyIndex {
    Even,
    Odd,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLen {
    Aes128,
    Aes192,
    Aes256,
}
impl KeyLen {
    pub fn bytes(self) -> usize {
        match self {
            KeyLen::Aes128 => 16,
            KeyLen::Aes192 => 24,
            KeyLen::Aes256 => 32,
        }
    }
}
#[derive(Debug, thiserror::Error)]
pub enum KmError {
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("bad")]
    Bad,
}
#[derive(Debug)]
pub struct Crypto;
impl Crypto {
    pub fn from_km(_km: &[u8], _p: &str) -> Result<Crypto, KmError> {
        Err(KmError::Bad)
    }
    pub fn generate(_k: KeyLen, _rng: &mut dyn FnMut(&mut [u8])) -> Crypto {
        Crypto
    }
    pub fn km_message(&self, _p: &str) -> Result<Bytes, KmError> {
        Err(KmError::Bad)
    }
    pub fn current_key(&self) -> KeyIndex {
        KeyIndex::Even
    }
    pub fn encrypt(&self, _k: KeyIndex, _seq: u32, _b: &mut [u8]) {}
    pub fn decrypt(&self, _k: KeyIndex, _seq: u32, _b: &mut [u8]) -> Result<(), KmError> {
        Ok(())
    }
}
