//! Lifecycle events, for logs, metrics and hooks.

use super::{Action, SessionId, StreamKey};
use crate::bus::CloseReason;
use core::time::Duration;

/// Something that happened to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A publisher started.
    Published {
        /// The stream.
        key: StreamKey,
        /// The publishing session.
        session: SessionId,
        /// Its protocol.
        protocol: String,
        /// Its peer address, when known.
        peer: Option<String>,
    },
    /// A stream ended: its publisher ended (with a linger time: and nobody
    /// came back within it), or the stream was reaped or shut down. Its
    /// players end.
    Unpublished {
        /// The stream.
        key: StreamKey,
        /// The session that ended (the last one to publish).
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// A publisher went away and its stream waits, players attached, for a
    /// publisher to come back within the linger time.
    Lingering {
        /// The stream.
        key: StreamKey,
        /// The session that went away.
        session: SessionId,
        /// How long the stream waits after the publisher's last frame.
        linger: Duration,
    },
    /// A publisher took over a lingering stream: its players (and any
    /// packager subscribed to the stream's bus) continue with this
    /// publisher's frames, so there is nothing new to subscribe to.
    Resumed {
        /// The stream.
        key: StreamKey,
        /// The new publishing session.
        session: SessionId,
        /// The session that had gone away.
        previous: SessionId,
        /// Its protocol.
        protocol: String,
        /// Its peer address, when known.
        peer: Option<String>,
    },
    /// A player joined.
    Played {
        /// The stream.
        key: StreamKey,
        /// The playing session.
        session: SessionId,
        /// Its protocol.
        protocol: String,
    },
    /// A request was refused.
    Rejected {
        /// The stream.
        key: StreamKey,
        /// What was asked.
        action: Action,
        /// Why, in words.
        reason: String,
        /// Why, as the requesting session is told.
        rejection: crate::session::Rejection,
        /// The protocol it came over.
        protocol: String,
        /// Its peer address, when known.
        peer: Option<String>,
    },
}

/// Receives [`EngineEvent`]s. Called synchronously from the session that
/// caused the event: keep it short.
pub trait Observer: Send + Sync {
    /// One event.
    fn on_event(&self, event: &EngineEvent);
}

/// Ignores everything: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn on_event(&self, _event: &EngineEvent) {}
}
