//! Consumers the engine attaches to every stream it starts: the HLS
//! packager, a recorder. Sans-IO like a session: a [`Consumer`] takes the
//! stream's deliveries and its end; the engine subscribes it to the very bus
//! it made for the stream (no look-up by key that could find a newer
//! publisher) and queues the pair as a [`Tap`] in its [`Taps`]; each adapter
//! takes taps from there and drives them ([`Tap::drive`]), so packaging and
//! recording work the same on tokio, smol and plain threads.

use core::task::{Context, Poll};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::bus::{DeliveryRef, RecvError, Subscription};
use crate::engine::{StreamKey, StreamStats};
use crate::time::Instant;

/// Takes one stream's deliveries (tracks first, then frames; lag and its
/// recovery as for any subscriber), then its end.
pub trait Consumer: Send {
    /// One delivery.
    fn handle(&mut self, now: Instant, delivery: DeliveryRef<'_>);

    /// The stream ended (its publisher left for good, or it was evicted for
    /// lag). Called once; nothing follows.
    fn end(&mut self, now: Instant, why: RecvError);

    /// Whether the consumer wants a key frame from the publisher (asked
    /// after each batch of deliveries; the request goes the way a player's
    /// does, [`Player::request_key_frame`](crate::engine::Player::request_key_frame)).
    /// The HLS packager asks when a segment cannot end for want of one.
    fn wants_key_frame(&mut self) -> bool {
        false
    }
}

/// Makes the consumer for a stream that starts (`None`: this stream needs
/// none).
pub type ConsumerFactory =
    Arc<dyn Fn(&StreamKey, Instant) -> Option<Box<dyn Consumer>> + Send + Sync>;

/// Deliveries one [`Tap::drive`] call hands over at most.
const TAP_BATCH: usize = 256;

/// A consumer and its subscription to the stream it was made for.
pub struct Tap {
    key: StreamKey,
    consumer: Box<dyn Consumer>,
    subscription: Subscription,
    ended: bool,
    /// The stream's count of live taps (its bus counts them among its
    /// subscribers; the stats do not count them as players).
    live: Arc<AtomicUsize>,
    /// The stream's counters (for key frame requests).
    stats: Arc<StreamStats>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl core::fmt::Debug for Tap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tap")
            .field("key", &self.key)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Tap {
    pub(crate) fn new(
        key: StreamKey,
        consumer: Box<dyn Consumer>,
        subscription: Subscription,
        live: Arc<AtomicUsize>,
        stats: Arc<StreamStats>,
    ) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Tap {
            key,
            consumer,
            subscription,
            ended: false,
            live,
            stats,
        }
    }

    /// The stream.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Hands ready deliveries to the consumer. `Ready(())` once the stream
    /// ended (the consumer was told; drop the tap); `Pending` with `cx`
    /// registered for the next frames.
    pub fn drive(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        if self.ended {
            return Poll::Ready(());
        }
        loop {
            let consumer = &mut self.consumer;
            let polled = self
                .subscription
                .poll_for_each(cx, TAP_BATCH, |d| consumer.handle(now, d));
            if self.consumer.wants_key_frame() {
                self.stats
                    .key_frame_requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.ended = true;
                    self.consumer.end(now, e);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// The taps an engine made and no adapter has taken yet.
#[derive(Default)]
pub struct Taps {
    queue: Mutex<VecDeque<Tap>>,
    waker: atomic_waker::AtomicWaker,
}

impl core::fmt::Debug for Taps {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Taps").finish_non_exhaustive()
    }
}

impl Taps {
    pub(crate) fn push(&self, tap: Tap) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(tap);
        self.waker.wake();
    }

    /// The next tap to drive; `Pending` (with `cx` registered) while there
    /// is none. The queue is touched once per stream start, never per frame.
    pub fn next_tap(&self, cx: &mut Context<'_>) -> Poll<Tap> {
        self.waker.register(cx.waker());
        match self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            Some(t) => Poll::Ready(t),
            None => Poll::Pending,
        }
    }

    /// The next tap, if one is waiting.
    pub fn try_next(&self) -> Option<Tap> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}
