//! arcly-blocking: runs arcly-stream's sans-IO sessions on a fixed pool of std
//! threads, with no async runtime at all, for embedded-style and blocking
//! hosts.
//!
//! [`serve`] blocks its caller: it accepts connections and deals them out to
//! `workers` threads, each of which waits on its sockets' readiness (through
//! mio's poller) and on its players' bus wake-ups, and drives each
//! connection's [`Conductor`](arcly_core::session::Conductor). Output that a socket cannot take yet waits in a
//! per-connection queue, and a playing connection takes no new deliveries
//! until its queue is empty, so a slow reader lags on the bus (and resumes at
//! a key frame) instead of growing a buffer. No protocol logic lives here.
//!
//! Waiting on the bus from a plain thread is [`recv_blocking`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod datagram;
mod pool;
mod storage;

pub use datagram::serve_endpoint;
pub use pool::{serve, Clock, ListenerConfig, Log, ShutdownHandle};
pub use storage::FsStorage;

use arcly_core::bus::{Delivery, RecvError, Subscription};
use arcly_core::frame::MediaFrame;
use bytes::Bytes;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Produces frames, blocking.
pub trait MediaSource {
    /// The next frame; `Ok(None)` at the end.
    fn next_frame(&mut self) -> io::Result<Option<MediaFrame>>;
}

/// Consumes frames, blocking.
pub trait MediaSink {
    /// Takes one frame.
    fn send_frame(&mut self, frame: MediaFrame) -> io::Result<()>;
    /// Flushes and marks the end.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Object storage, blocking.
pub trait StorageBackend: Send + Sync {
    /// Writes `data` at `key` atomically.
    fn put(&self, key: &str, data: Bytes) -> io::Result<()>;
    /// Reads `key`.
    fn get(&self, key: &str) -> io::Result<Bytes>;
    /// Removes `key` (absent is fine).
    fn delete(&self, key: &str) -> io::Result<()>;
    /// Keys starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;
    /// Moves the file at `path` to `key`.
    fn put_file(&self, key: &str, path: &Path) -> io::Result<()>;
}

/// A [`Publisher`](arcly_core::engine::Publisher) as a [`MediaSink`]: an
/// embedder's frames go into the engine stamped with the host clock.
/// Dropping it (or [`flush`](MediaSink::flush)) ends the stream.
#[derive(Debug)]
pub struct PublishSink {
    publisher: Option<arcly_core::engine::Publisher>,
    clock: Clock,
}

impl PublishSink {
    /// Frames sent to it are published by `publisher`.
    pub fn new(publisher: arcly_core::engine::Publisher, clock: Clock) -> Self {
        PublishSink {
            publisher: Some(publisher),
            clock,
        }
    }
}

impl MediaSink for PublishSink {
    fn send_frame(&mut self, frame: MediaFrame) -> io::Result<()> {
        let p = self
            .publisher
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        p.publish(self.clock.now(), frame).map_err(|e| {
            io::Error::new(io::ErrorKind::BrokenPipe, format!("stream closed: {}", e.0))
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.publisher = None;
        Ok(())
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits on the current thread for the next delivery of `sub`.
pub fn recv_blocking(sub: &mut Subscription) -> Result<Delivery, RecvError> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match sub.poll_recv(&mut cx) {
            Poll::Ready(r) => return r,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A subscription as a blocking [`MediaSource`] of frames.
impl MediaSource for Subscription {
    fn next_frame(&mut self) -> io::Result<Option<MediaFrame>> {
        loop {
            match recv_blocking(self) {
                Ok(Delivery::Frame(f)) => return Ok(Some(f)),
                Ok(_) => continue,
                Err(_) => return Ok(None),
            }
        }
    }
}

/// Takes every tap `engine` makes (the HLS packager, a recorder: see
/// `EngineBuilder::consumer`) and drives them all on the calling thread
/// until `shutdown` fires. Blocks its caller.
pub fn drive_taps(engine: &arcly_core::engine::Engine, clock: Clock, shutdown: &ShutdownHandle) {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut taps: Vec<arcly_core::engine::Tap> = Vec::new();
    while !shutdown.is_triggered() {
        while let Poll::Ready(t) = engine.taps().next_tap(&mut cx) {
            taps.push(t);
        }
        taps.retain_mut(|t| t.drive(&mut cx, clock.now()).is_pending());
        // Woken by the bus or a new tap; the timeout notices shutdown.
        std::thread::park_timeout(std::time::Duration::from_millis(100));
    }
}
