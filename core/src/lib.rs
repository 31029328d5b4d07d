//! arcly-core: the sans-IO kernel of arcly-stream.
//!
//! Nothing in this crate performs IO, reads a clock, spawns, or sleeps: time
//! comes in as [`time::Instant`] from the host, bytes and frames come in
//! through method calls, and results come out as return values. The
//! executor adapters (`arcly-tokio`, `arcly-smol`, `arcly-blocking`) own the
//! sockets, timers and tasks.
//!
//! * [`time`]: host time and media time, 32/33-bit clock extension, rescaling.
//! * [`frame`]: [`MediaFrame`], tracks and their
//!   configuration, and the canonical payload form of each codec.
//! * `bus` (feature `std`): the lock-free fan-out ring with its GOP cache.
//! * `engine` (feature `std`): apps, streams, auth, sessions, QoS.
//! * `session` (feature `std`): the session contract every protocol
//!   implements, and the `Conductor` that connects a session to the engine.
//! * `endpoint` (feature `std`): many peers on one datagram socket: the
//!   contract a protocol's endpoint implements and the host that runs its
//!   sessions.
//! * `host` (feature `std`): what every adapter's driver shares: the output
//!   queue and its write deadline, read and delivery gating, per-address
//!   limits.
//! * `sim` (feature `sim`): a deterministic network simulator for sans-IO
//!   tests (seeded loss, reordering, duplication, delay, bandwidth).
//! * [`media`]: the media plane (codec parsers, containers, playlists).
//! * [`transcode`]: where a host's audio transcoder plugs in for a player
//!   whose protocol cannot carry the stream's codec.
//!
//! With `default-features = false` the crate is `#![no_std]` + `alloc` and
//! offers the time and frame model (and, as they arrive, the media plane's
//! parsers and muxers); the bus and the engine need `std` for threads and the
//! epoch collector.

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod frame;
pub mod time;

#[cfg(feature = "std")]
pub mod bus;
#[cfg(feature = "std")]
pub mod endpoint;
#[cfg(feature = "std")]
pub mod engine;
#[cfg(feature = "std")]
pub mod host;
pub mod media;
#[cfg(feature = "std")]
pub mod session;
#[cfg(feature = "std")]
pub mod signal;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod storage;
pub mod transcode;

pub use bytes::{Bytes, BytesMut};
pub use frame::{CodecId, FrameKind, MediaFrame, TrackId, TrackInfo, TrackSet};
pub use time::{Instant, MediaTime, Timescale};

#[cfg(feature = "std")]
pub use bus::{Delivery, RecvError, Subscription};
#[cfg(feature = "std")]
pub use engine::{AppSpec, Engine, Publisher, Request, StreamKey};
