//! Lifecycle events, for logs, metrics and hooks.

use super::{Action, SessionId, StreamKey};
use crate::bus::CloseReason;

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
    /// A publisher ended.
    Unpublished {
        /// The stream.
        key: StreamKey,
        /// The session that ended.
        session: SessionId,
        /// Why.
        reason: CloseReason,
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
