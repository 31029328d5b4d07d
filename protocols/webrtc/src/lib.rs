//! WebRTC for arcly-stream, on str0m.
//!
//! The ground the WHIP ingest and WHEP playback stand on: [`crypto`], a
//! pure-Rust crypto provider for str0m (its own `rust-crypto` backend
//! builds C through aws-lc-rs for the certificate). The sessions, the
//! endpoint that routes every peer's datagrams on one UDP port and the
//! signalling contract come next.

#![forbid(unsafe_code)]

pub mod crypto;

#[cfg(test)]
mod tests;
