//! WebRTC for arcly-stream, on str0m.
//!
//! * [`crypto`]: a pure-Rust crypto provider for str0m (its own
//!   `rust-crypto` backend builds C through aws-lc-rs for the
//!   certificate);
//! * [`endpoint`]: every peer on one UDP port, and the signalling side
//!   that answers WHIP offers for the HTTP router (through
//!   `arcly_core::signal`);
//! * [`WhepClient`]: a WHEP player for load tools;
//! * [`PeerSession`]: a WHIP publisher (H.264 and Opus in) or a WHEP
//!   player (H.264 and Opus out, from the GOP cache's key frame).

#![forbid(unsafe_code)]

pub mod client;
pub mod crypto;
pub mod endpoint;
mod peer;
mod stun;

pub use client::{WhepClient, WhepEvent};
pub use endpoint::{webrtc, WebRtcConfig, WebRtcEndpoint, WebRtcSignalling};
pub use peer::{PeerSession, Role};
/// Live WebRTC peers' link figures, for the stats API.
pub type WebRtcStats = arcly_core::engine::LinkRegistry;

#[cfg(test)]
mod tests;
