//! arcly-rtmp: RTMP server and client sessions as sans-IO state machines.
//!
//! * [`handshake`]: C0/C1/C2 and S0/S1/S2, plain and digest (HMAC-SHA256).
//! * [`chunk`]: chunk streams, all four header types, extended timestamps.
//! * [`message`]: protocol control, user control, media, data, commands.
//! * [`amf0`], [`amf3`]: the value encodings of commands and metadata.
//! * [`flv`]: FLV audio/video tag bodies, legacy and enhanced RTMP.
//! * [`flv_file`]: the FLV file container, read incrementally.
//! * [`ingest`] / [`egress`]: tags to the kernel's frames and back.
//! * [`server`]: [`ServerSession`], the server side as an
//!   [`arcly_core::session::Session`].
//! * [`client`]: [`ClientSession`], a publishing or playing client with the
//!   same contract, for relays and load tools.
//!
//! Nothing here performs IO, reads a clock or a random source, or spawns:
//! time and the handshake's seed are inputs.
//!
//! # Driving a server session
//!
//! Feed what the socket reads, then drain transmits and events; answer each
//! request (normally the [`Conductor`](arcly_core::session::Conductor) does
//! this through the engine, which checks the token):
//!
//! ```
//! use arcly_core::session::{Input, Session, SessionEvent};
//! use arcly_core::time::Instant;
//! use arcly_rtmp::{RtmpConfig, ServerSession};
//! use bytes::BytesMut;
//!
//! let mut session = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
//! // C0 and the start of C1 from a client; the rest comes with later reads.
//! session.handle_input(Instant::from_millis(1), Input::Stream(BytesMut::from(&[3u8, 0, 0][..])));
//! while let Some(transmit) = session.poll_transmit() {
//!     drop(transmit); // write transmit.data to the socket
//! }
//! while let Some(event) = session.poll_event() {
//!     match event {
//!         SessionEvent::Request(r) => session.accept(Instant::from_millis(1), r.id),
//!         SessionEvent::Frame(frame) => drop(frame), // publish it
//!         _ => {}
//!     }
//! }
//! // Sleep until `poll_timeout`, then call `handle_timeout`.
//! assert!(session.poll_timeout().is_some());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Tests unwrap freely: a panic there is a failed test.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod amf0;
pub mod amf3;
pub mod chunk;
pub mod client;
pub mod command;
pub mod config;
pub mod connection;
pub mod egress;
pub mod error;
pub mod flv;
pub mod flv_file;
pub mod handshake;
pub mod ingest;
pub mod message;
pub mod server;

pub use amf0::Amf0Value;
pub use client::{ClientMode, ClientSession, ClientTarget, ClientUrl};
pub use config::RtmpConfig;
pub use error::RtmpError;
pub use flv::FlvTag;
pub use server::ServerSession;
