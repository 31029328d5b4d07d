//! Randomness from a seed the host hands in (sans-IO: no OS source here):
//! HMAC-SHA256 over a counter, for socket ids, initial sequence numbers,
//! SYN cookies and encryption keys.

use core::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A deterministic random generator keyed by a 32-byte secret.
#[derive(Clone)]
pub struct Drbg {
    key: [u8; 32],
    counter: u64,
}

impl core::fmt::Debug for Drbg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Drbg(..)")
    }
}

impl Drbg {
    /// A generator from `seed` (give it 32 bytes from the OS's source).
    pub fn new(seed: [u8; 32]) -> Self {
        Drbg {
            key: seed,
            counter: 0,
        }
    }

    fn mac(&self) -> HmacSha256 {
        match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            // HMAC takes keys of any length.
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }

    /// Fills `out`.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            self.counter += 1;
            let mut m = self.mac();
            m.update(b"fill");
            m.update(&self.counter.to_be_bytes());
            let block = m.finalize().into_bytes();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }

    /// A random `u32`.
    pub fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_be_bytes(b)
    }

    /// The SYN cookie for `peer` in time bucket `bucket` (e.g. the minute).
    pub fn cookie(&self, peer: SocketAddr, bucket: u64) -> u32 {
        let mut m = self.mac();
        m.update(b"cookie");
        match peer {
            SocketAddr::V4(a) => m.update(&a.ip().octets()),
            SocketAddr::V6(a) => m.update(&a.ip().octets()),
        }
        m.update(&peer.port().to_be_bytes());
        m.update(&bucket.to_be_bytes());
        let b = m.finalize().into_bytes();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}
