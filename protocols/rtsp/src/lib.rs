//! arcly-rtsp: RTSP 1.0 (RFC 2326, with what RFC 7826 clarified) as sans-IO
//! sessions, with SDP (RFC 8866), RTP/RTCP (RFC 3550) and the payload
//! formats of H.264 (RFC 6184), H.265 (RFC 7798), AAC (RFC 3640) and Opus
//! (RFC 7587).
//!
//! * [`message`]: requests, responses and interleaved frames on the control
//!   connection; [`url`]: URLs, stream keys and `Transport` headers;
//!   [`auth`]: Basic and Digest; [`sdp`]: session descriptions.
//! * [`rtp`]: the RTP header, the extended clock, the reorder buffer;
//!   [`rtcp`]: sender and receiver reports.
//! * [`payload`]: depacketizers and packetizers per codec.
//! * [`RtspSession`]: the server side of a control connection (publish with
//!   ANNOUNCE/RECORD, play with DESCRIBE/PLAY), an
//!   [`arcly_core::session::Session`].
//! * [`RtspClient`]: our client, pulling a stream from a camera or another
//!   server into a key.
//!
//! Nothing here performs IO or reads a clock: bytes, datagrams and time are
//! inputs.

#![forbid(unsafe_code)]

use std::time::Duration;

pub mod auth;
pub mod client;
mod egress;
mod ingest;
pub mod message;
pub mod payload;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod server;
pub mod url;

#[cfg(test)]
mod tests;

pub use client::{ClientConfig, RtspClient};
pub use server::RtspSession;
/// Live RTSP sessions' and pulls' link figures, for the stats API.
pub type RtspStats = arcly_core::engine::LinkRegistry;

/// The server's settings.
#[derive(Clone, Debug)]
pub struct RtspConfig {
    /// Bounds on what one message may hold.
    pub limits: message::Limits,
    /// A session whose media go over UDP and that hears nothing for this
    /// long is closed (RFC 2326 §12.37: 60 s by default).
    pub session_timeout: Duration,
    /// The largest RTP packet we send, header included.
    pub mtu: usize,
    /// Wall-clock Unix microseconds at `Instant::ZERO`, for the NTP time of
    /// sender reports.
    pub unix_base_us: u64,
    /// The `Authorization` schemes the server takes and challenges with.
    pub auth: RtspAuth,
}

/// The `Authorization` schemes an RTSP server takes, and offers in a 401's
/// `WWW-Authenticate` (Digest first: clients take the first they know).
///
/// Basic hands the password to the host, which may check it against a
/// path's users, or take it as a token, a JWT, or pass it to a callback.
/// Digest (MD5) keeps the password off the wire, so only an authenticator
/// that knows the user's password can check it (a path's users).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtspAuth {
    /// `Basic` (RFC 7617).
    pub basic: bool,
    /// `Digest` (RFC 7616 with MD5, RFC 2326 §D.2.2).
    pub digest: bool,
}

impl Default for RtspAuth {
    fn default() -> Self {
        RtspAuth {
            basic: true,
            digest: false,
        }
    }
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            limits: message::Limits::default(),
            session_timeout: Duration::from_secs(60),
            mtu: 1400,
            unix_base_us: 0,
            auth: RtspAuth::default(),
        }
    }
}

/// What went wrong on an RTSP connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtspError {
    /// A message did not parse or went past a bound.
    #[error(transparent)]
    Message(#[from] message::MessageError),
    /// A session description did not parse.
    #[error(transparent)]
    Sdp(#[from] sdp::SdpError),
    /// A payload format's parameters are unusable.
    #[error(transparent)]
    Payload(#[from] payload::PayloadError),
    /// A request without a `CSeq`.
    #[error("a request without CSeq")]
    NoCSeq,
    /// The description has no track in a codec we carry.
    #[error("no H.264, H.265, AAC or Opus track in the description")]
    NoTracks,
    /// The remote answered with an error status.
    #[error("{method} answered {status} {reason}")]
    Status {
        /// The request's method.
        method: String,
        /// The status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The remote's answer lacks what the protocol needs.
    #[error("{0}")]
    BadAnswer(String),
    /// The URL is not an RTSP URL.
    #[error("not an rtsp:// URL: {0}")]
    Url(String),
    /// Over UDP, no packet came after PLAY (a firewall, or a server that
    /// sends elsewhere): call again over TCP.
    #[error("no RTP over UDP after PLAY")]
    UdpBlocked,
    /// No media arrived for too long.
    #[error("no media for {0} s")]
    NoMedia(u64),
}
