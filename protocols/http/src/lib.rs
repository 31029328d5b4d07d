//! arcly-http: a sans-IO HTTP/1.1 server session for arcly-stream.
//!
//! [`HttpSession`] implements the kernel's session contract: bytes in,
//! responses out, keep-alive and pipelining in order, request size and time
//! limits, CORS for browsers, `HEAD`, `ETag`/`If-None-Match`, and requests a
//! [`Handler`] holds open until it can answer them (LL-HLS blocking
//! reloads). [`stats`] renders `/api/streams` and `/metrics` from an engine;
//! [`HlsOrigin`] packages streams into HLS / LL-HLS and serves them; the
//! [`Router`] puts it all behind the gateway's URLs. `GET /APP/STREAM.flv`
//! plays a stream as HTTP-FLV: the session asks its host to play, as an
//! RTMP session does, and streams core's FLV tags in chunks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod flv;
pub mod flv_client;
pub mod hls;
pub mod message;
mod router;
mod server;
pub mod stats;

pub use hls::{ConfigFor, HlsOrigin, Packager};
pub use message::{Method, ParseError, Request, Response};
pub use router::{MetricsHook, ReloadHook, Router, SessionsApi};
pub use server::{Handler, HttpConfig, HttpSession, DEFAULT_MAX_QUEUED};

#[cfg(test)]
mod flv_tests;
#[cfg(test)]
mod hls_tests;
#[cfg(test)]
mod tests;
