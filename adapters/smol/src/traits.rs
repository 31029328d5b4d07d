//! The extension points in smol's terms.

use arcly_core::bus::{Delivery, RecvError, Subscription};
use arcly_core::frame::MediaFrame;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Produces frames.
pub trait MediaSource: Send {
    /// The next frame; `Ok(None)` at the end.
    fn next_frame(&mut self) -> impl Future<Output = io::Result<Option<MediaFrame>>> + Send;
}

/// Consumes frames.
pub trait MediaSink: Send {
    /// Takes one frame.
    fn send_frame(&mut self, frame: MediaFrame) -> impl Future<Output = io::Result<()>> + Send;
    /// Flushes and marks the end.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Object storage.
pub trait StorageBackend: Send + Sync {
    /// Writes `data` at `key` atomically.
    fn put(&self, key: &str, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads `key`.
    fn get(&self, key: &str) -> impl Future<Output = io::Result<Bytes>> + Send;
    /// Removes `key` (absent is fine).
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<()>> + Send;
    /// Keys starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = io::Result<Vec<String>>> + Send;
    /// Moves the file at `path` to `key`.
    fn put_file(&self, key: &str, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
}

/// A [`Publisher`](arcly_core::engine::Publisher) as a [`MediaSink`]: an
/// embedder's frames go into the engine stamped with the host clock.
/// Dropping it (or [`flush`](MediaSink::flush)) ends the stream.
#[derive(Debug)]
pub struct PublishSink {
    publisher: Option<arcly_core::engine::Publisher>,
    clock: crate::Clock,
}

impl PublishSink {
    /// Frames sent to it are published by `publisher`.
    pub fn new(publisher: arcly_core::engine::Publisher, clock: crate::Clock) -> Self {
        PublishSink {
            publisher: Some(publisher),
            clock,
        }
    }
}

impl MediaSink for PublishSink {
    async fn send_frame(&mut self, frame: MediaFrame) -> io::Result<()> {
        let p = self
            .publisher
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        p.publish(self.clock.now(), frame).map_err(|e| {
            io::Error::new(io::ErrorKind::BrokenPipe, format!("stream closed: {}", e.0))
        })
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.publisher = None;
        Ok(())
    }
}

/// A subscription as a `futures::Stream` of deliveries.
#[derive(Debug)]
pub struct SubscriptionStream {
    inner: Subscription,
    end: Option<RecvError>,
}

impl SubscriptionStream {
    /// Wraps a subscription.
    pub fn new(inner: Subscription) -> Self {
        SubscriptionStream { inner, end: None }
    }

    /// Why it ended, once it has.
    pub fn end_reason(&self) -> Option<RecvError> {
        self.end
    }
}

impl futures::Stream for SubscriptionStream {
    type Item = Delivery;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        match self.inner.poll_recv(cx) {
            Poll::Ready(Ok(d)) => Poll::Ready(Some(d)),
            Poll::Ready(Err(e)) => {
                self.end = Some(e);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
