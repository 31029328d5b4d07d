//! Graceful shutdown: one trigger, any number of listeners.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// What the trigger and its signals share.
#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    notify: Notify,
}

/// Triggers shutdown. Dropping it does not trigger it.
#[derive(Debug)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

/// Resolves when shutdown was triggered. Cloning is cheap.
///
/// A flag and a [`Notify`] rather than a watch channel: every connection
/// holds a waiting signal, and this one's wait is about half the size.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        Shutdown {
            inner: Arc::default(),
        }
    }

    /// A signal for one listener or connection.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            inner: self.inner.clone(),
        }
    }

    /// Fires: every signal resolves.
    pub fn trigger(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }
}

impl ShutdownSignal {
    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Waits for the trigger (returns at once if it already fired, and if the
    /// trigger was dropped without firing, never).
    pub async fn wait(self) {
        // Made before the flag is read: a wait made before a trigger's
        // `notify_waiters` is woken by it, polled or not.
        let woken = self.inner.notify.notified();
        if self.is_triggered() {
            return;
        }
        woken.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_made_before_and_after_the_trigger_resolve_and_none_without_it() {
        let s = Shutdown::new();
        let early = tokio::spawn(s.signal().wait());
        // Made before the trigger and not yet polled when it fires.
        let unpolled = s.signal().wait();
        tokio::task::yield_now().await;
        assert!(!s.signal().is_triggered());
        s.trigger();
        assert!(s.signal().is_triggered());
        let second = Duration::from_secs(1);
        tokio::time::timeout(second, early)
            .await
            .expect("a waiting signal resolves")
            .unwrap();
        tokio::time::timeout(second, unpolled)
            .await
            .expect("a wait made before the trigger resolves");
        tokio::time::timeout(second, s.signal().wait())
            .await
            .expect("a wait made after the trigger resolves at once");

        let dropped = Shutdown::new();
        let orphan = dropped.signal();
        drop(dropped);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), orphan.wait())
                .await
                .is_err(),
            "a trigger dropped without firing never fires"
        );
    }
}
