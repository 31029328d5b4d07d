//! arcly-tokio: runs arcly-stream's sans-IO sessions on tokio.
//!
//! This crate owns sockets, timers and tasks and nothing else: every decision
//! is made by a [`Conductor`](arcly_core::session::Conductor) and the session
//! inside it. [`drive_stream`] moves bytes between a TCP socket and a
//! conductor; [`serve`] accepts connections with a limit and shuts them down
//! gracefully; [`FsStorage`] stores objects atomically under a root; the
//! traits [`MediaSource`], [`MediaSink`] (a [`PublishSink`] publishes into
//! the engine) and [`StorageBackend`] are the extension points in tokio's
//! terms, and
//! [`SubscriptionStream`] makes a bus subscription a `futures::Stream`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod clock;
mod datagram;
mod driver;
mod listener;
mod sessions;
mod shutdown;
mod storage;
mod tap;
mod traits;

pub use client::drive_client;
pub use clock::Clock;
pub use datagram::{drive_endpoint, drive_endpoint_tracked};
pub use driver::{drive_stream, DriverConfig};
pub use listener::{serve, ConnStats, ListenerConfig, Log};
pub use sessions::{SessionInfo, Sessions};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use storage::FsStorage;
pub use tap::drive_taps;
pub use traits::{MediaSink, MediaSource, PublishSink, StorageBackend, SubscriptionStream};
