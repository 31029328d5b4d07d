//! Drives the consumers the engine attaches to its streams (the HLS
//! packager, a recorder): one task per stream.

use crate::{Clock, ShutdownSignal};
use arcly_core::engine::Engine;
use std::future::poll_fn;
use std::pin::pin;

/// Takes every tap `engine` makes and drives each on its own task (smol's
/// global executor) until its stream ends, until `shutdown` fires; then the
/// rest are cancelled. No task outlives the call.
pub async fn drive_taps(engine: Engine, clock: Clock, shutdown: ShutdownSignal) {
    let mut tasks: Vec<smol::Task<()>> = Vec::new();
    let mut stop = pin!(shutdown.wait());
    loop {
        tasks.retain(|t| !t.is_finished());
        let next = pin!(poll_fn(|cx| engine.taps().next_tap(cx)));
        match futures::future::select(stop.as_mut(), next).await {
            futures::future::Either::Left(_) => break,
            futures::future::Either::Right((mut tap, _)) => {
                tasks.push(smol::spawn(async move {
                    poll_fn(|cx| tap.drive(cx, clock.now())).await
                }));
            }
        }
    }
    // Dropping a smol task cancels it.
    drop(tasks);
}
