//! Sessions whose setup comes over another protocol: WebRTC's WHIP and
//! WHEP, where an HTTP request carries the SDP offer and the media then
//! flows over a UDP endpoint. The HTTP side hands the offer to a
//! [`Signalling`] and sends back what it answers; neither protocol crate
//! knows the other, they meet here.

use alloc::string::String;

use crate::engine::Action;
use crate::time::Instant;

/// An SDP offer for a stream, as an HTTP request brought it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Publish (WHIP) or play (WHEP).
    pub action: Action,
    /// The application.
    pub app: String,
    /// The stream.
    pub stream: String,
    /// The bearer token (`Authorization: Bearer`, or `?token=`).
    pub token: Option<String>,
    /// A user name (`Authorization: Basic`), with its password.
    pub user: Option<String>,
    /// The password that came with [`user`](Self::user).
    pub password: Option<String>,
    /// The offer (`application/sdp`).
    pub sdp: String,
}

/// The answer to an [`Offer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The session's resource id (the last part of its `Location`).
    pub id: String,
    /// The SDP answer.
    pub sdp: String,
}

/// Why an offer was refused, with the HTTP status it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfferError {
    /// The offer does not parse or offers nothing usable (400), with the
    /// reason.
    Bad(String),
    /// Too many sessions at once (503).
    Busy,
    /// This kind of session is not served here (501).
    Unsupported,
}

/// Takes offers and ends sessions by id: the WebRTC endpoint's signalling
/// face, which the HTTP router calls.
pub trait Signalling: Send + Sync {
    /// Answers an offer; the session starts when its peer connects to the
    /// endpoint, and asks the host to publish or play then.
    fn offer(&self, now: Instant, offer: Offer) -> Result<Answer, OfferError>;

    /// Ends the session `id` (an HTTP `DELETE` of its resource); false
    /// when there is none.
    fn end(&self, id: &str) -> bool;
}

impl core::fmt::Debug for dyn Signalling {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Signalling")
    }
}

/// A shared signalling handle.
pub type SharedSignalling = alloc::sync::Arc<dyn Signalling>;
