//! WebRTC for arcly-stream, on str0m.
//!
//! * [`crypto`]: a pure-Rust crypto provider for str0m (its own
//!   `rust-crypto` backend builds C through aws-lc-rs for the
//!   certificate);
//! * [`endpoint`]: every peer on one UDP port, and the signalling side
//!   that answers WHIP offers for the HTTP router (through
//!   `arcly_core::signal`);
//! * [`WhipSession`]: a WHIP publisher, H.264 and Opus in.
//!
//! WHEP playback is not here yet: a WHEP offer is answered 501.

#![forbid(unsafe_code)]

pub mod crypto;
pub mod endpoint;
mod stun;
mod whip;

pub use endpoint::{webrtc, WebRtcConfig, WebRtcEndpoint, WebRtcSignalling};
pub use whip::WhipSession;

#[cfg(test)]
mod tests;
