//! Graceful shutdown: one trigger, any number of listeners.

use tokio::sync::watch;

/// Triggers shutdown. Dropping it does not trigger it.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// Resolves when shutdown was triggered. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Shutdown { tx }
    }

    /// A signal for one listener or connection.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Fires: every signal resolves.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits for the trigger (returns at once if it already fired, and if the
    /// trigger was dropped without firing, never).
    pub async fn wait(mut self) {
        if self.rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
