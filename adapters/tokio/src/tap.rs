//! Drives the consumers the engine attaches to its streams (the HLS
//! packager, a recorder): one task per stream.

use crate::{Clock, ShutdownSignal};
use arcly_core::engine::{Engine, Tap};
use std::future::poll_fn;
use tokio::task::JoinSet;

/// Takes every tap `engine` makes and drives each on its own task until its
/// stream ends, until `shutdown` fires; then the rest are dropped. No task
/// outlives the call.
pub async fn drive_taps(engine: Engine, clock: Clock, shutdown: ShutdownSignal) {
    let mut tasks = JoinSet::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            tap = poll_fn(|cx| engine.taps().next_tap(cx)) => {
                tasks.spawn(drive(tap, clock));
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn drive(mut tap: Tap, clock: Clock) {
    poll_fn(|cx| tap.drive(cx, clock.now())).await
}
